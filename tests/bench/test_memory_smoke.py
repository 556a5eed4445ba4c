"""A smoke run of `python -m bench.memory` on tiny sizes, so the benchmark cannot rot unnoticed (no assertion on
the figures: they are the benchmark's to report)."""

from __future__ import annotations

import pytest

from bench import memory

pytestmark = pytest.mark.integration


def test_the_memory_benchmark_runs_against_a_real_service():
    result = memory.measure(batches=2, per_batch=40, concurrency=4)
    assert result["statuses"] == {200: 80}
    assert len(result["rss_mb"]) == 3 and all(mb > 100 for mb in result["rss_mb"])
    assert "KB per request" in memory.format_lines(result)[-1]
