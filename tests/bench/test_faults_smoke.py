"""A smoke run of `python -m bench.faults` on tiny sizes, so the benchmark cannot rot unnoticed: it runs a real
`coe serve` on the default settings and must report what the failure path promises (no timing assertions but
the crowd's, which is the benchmark's own point)."""

from __future__ import annotations

import pytest

from bench import faults

pytestmark = pytest.mark.integration


def test_the_faults_benchmark_runs_and_reports_the_contract():
    result = faults.run(quick=True, tries=1, crowd=8)
    rows = result["rows"]
    assert set(rows) == {f"{label} ({mode})" for label, expert in faults.SCENARIOS
                         if expert in faults.QUICK_SCENARIOS for mode in ("invoke", "stream")}
    assert rows["healthy (invoke)"]["outcomes"] == {"answered by healthy": 1}
    assert rows["mid-stream SSE error (stream)"]["outcomes"] == {"SSE error expert_interrupted (sse_error-s)": 1}
    assert rows["mid-stream SSE error (invoke)"]["outcomes"] == {"answered by healthy": 1}
    assert rows["429 + Retry-After: 50 (invoke)"]["p50_ms"] < 2000
    crowd = result["crowd"]
    assert crowd["crowd_outcomes"] == {"answered by healthy": 8}
    assert crowd["breaker_after_p50_ms"] is not None and crowd["breaker_after_p50_ms"] < 2000
    lines = faults.format_lines(result)
    assert any("crowd: 8 requests" in line for line in lines)
