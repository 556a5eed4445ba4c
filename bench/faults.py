"""Time to answer under expert faults, through a real `coe serve` process.

The routed expert sits behind one fault at a time, with a healthy fallback expert next in its chain; the row is
the p50 (and max) time until the client has its answer, and the statuses it got:

    healthy       the routed expert answers (the baseline)
    closed port   nothing listens: connection refused, then the fallback
    hang          accepts and never answers: the expert's timeout_s, then the fallback
    slow drip     answers one byte every 0.5 s and never finishes: per-read timeouts never fire, so only the
                  request deadline (--deadline-s) ends it
    HTTP 500      an error body (echoing the API key, which must not come back), then the fallback
    HTTP 429      rate limited, then the fallback
    dropped       closes the connection without a response, then the fallback

Experts are behaviours of the capturing fake upstream (tests/service_upstream.py), so the faults are exact and
the healthy answer is instant: what is measured is the service's reaction to the fault.

    python -m bench.faults [--quick] [--requests N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service_upstream import CoeServe, Upstream, closed_port_url

HANG_TIMEOUT_S = 1.0
DEADLINE_S = 5.0
KEY = "sk-bench-" + "Qx7Yt3" * 4
SCENARIOS = (  # (row, expert, upstream behaviour or None for a closed port)
    ("healthy", "healthy", "answer"),
    ("closed port", "closed", None),
    ("hang", "hang", "hang"),
    ("slow drip", "drip", "drip:0.5"),
    ("HTTP 500 errors", "errors", "status:500"),
    ("HTTP 429 rate limit", "limited", "status:429"),
    ("dropped connection", "dropped", "close"),
)


def fault_config(upstream_url: str) -> dict:
    def model(behaviour: str | None) -> dict:
        return {"provider": "openai", "model": behaviour or "answer",
                "base_url": upstream_url if behaviour else closed_port_url(), "api_key_env": "COE_BENCH_UPSTREAM_KEY",
                "max_retries": 0, "timeout_s": HANG_TIMEOUT_S}

    models = {f"m-{expert}": model(behaviour) for _, expert, behaviour in SCENARIOS}
    experts = {expert: {"model": f"m-{expert}", "style": "plain"} for _, expert, _ in SCENARIOS}
    return {"models": models, "tasks": {"general": "anything"}, "experts": experts,
            "task_map": {"general": ["healthy"]}, "default_expert": "healthy",
            "classifier": {"kind": "rules", "rules": {"general": ["."]}}}


def measure(requests: int) -> dict:
    with tempfile.TemporaryDirectory() as folder, Upstream() as upstream:
        service = CoeServe(fault_config(upstream.url), folder, "faults",
                           args=("--token-env", "COE_BENCH_NO_TOKEN", "--deadline-s", str(DEADLINE_S)),
                           env={"COE_BENCH_UPSTREAM_KEY": KEY})
        with service, httpx.Client(base_url=service.url, timeout=DEADLINE_S + 30) as client:
            client.post("/v1/chat/completions", json={"model": "coe", "messages": [{"role": "user", "content": "warm"}]})
            rows = {}
            for label, expert, behaviour in SCENARIOS:
                times, statuses, answered_by, leaked = [], {}, set(), False
                for i in range(requests):
                    started = time.perf_counter()
                    response = client.post("/v1/chat/completions", json={
                        "model": f"coe/{expert}", "messages": [{"role": "user", "content": f"question {i}"}]})
                    times.append(time.perf_counter() - started)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    leaked |= KEY in response.text
                    if response.status_code == 200:
                        answered_by.add(response.headers.get("x-coe-expert"))
                rows[label] = {"p50_ms": round(statistics.median(times) * 1000, 1),
                               "max_ms": round(max(times) * 1000, 1), "statuses": statuses,
                               "answered_by": sorted(a for a in answered_by if a), "key_leaked": leaked}
    healthy = rows["healthy"]["p50_ms"]
    for row in rows.values():
        row["x_healthy"] = round(row["p50_ms"] / healthy, 1) if healthy else None
    return {"requests_per_fault": requests, "expert_timeout_s": HANG_TIMEOUT_S, "deadline_s": DEADLINE_S,
            "rows": rows}


def run(quick: bool = False, requests: int | None = None) -> dict:
    return measure(requests or (3 if quick else 8))


def format_lines(result: dict) -> list[str]:
    title = (f"  Time to answer under expert faults (coe serve process, healthy fallback, expert timeout_s "
             f"{result['expert_timeout_s']:g}, --deadline-s {result['deadline_s']:g}, "
             f"{result['requests_per_fault']} requests each)")
    lines = ["", title,
             f"  {'routed expert':<26}{'p50 ms':>10}{'max ms':>10}{'x healthy':>11}  statuses / answered by"]
    for label, row in result["rows"].items():
        statuses = ", ".join(f"{code}x{n}" for code, n in sorted(row["statuses"].items()))
        by = ", ".join(row["answered_by"]) or "-"
        lines.append(f"  {label:<26}{row['p50_ms']:>10.1f}{row['max_ms']:>10.1f}{row['x_healthy']:>10}x  "
                     f"{statuses} / {by}" + ("  KEY LEAKED" if row["key_leaked"] else ""))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, help="requests per fault (default 8, --quick 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick, args.requests)
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
