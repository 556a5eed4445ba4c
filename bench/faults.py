"""Time to answer under expert faults, through a real `coe serve` process with the DEFAULT settings.

No timeout, retry, deadline or breaker is set anywhere: the rows are what a user gets. The routed expert sits
behind one fault at a time, with a healthy fallback expert next in its chain (the experts are behaviours of the
fake upstream, tests/service_upstream.py, so the faults are exact and the healthy answer is instant):

    hang            accepts and never answers
    SIGSTOP         the upstream process is frozen (connections still accepted by the kernel)
    byte trickle    a valid answer sent one byte a second (per-read timeouts never fire)
    mid-stream close / cut / SSE error   three tokens, then a clean close without a finish reason, a dropped
                    connection, or an SSE error event
    429             with Retry-After: 50
    HTTP 500, dropped connection, closed port

Each fault is tried `tries` times non-streamed and `tries` times streamed, on two copies of its expert (one per
mode, each with its own circuit breaker). A row gives p50 / max until the client had its whole answer over the
tries in which the faulty expert was actually called, then the p50 once its breaker had opened (the expert is
skipped), and what the client got: answered (by whom) or, for a stream whose expert failed after its first
tokens, an SSE error event (never another expert's text after them).

Two more measurements:
    crowd           `crowd` requests at the frozen expert at once; meanwhile requests to a healthy expert of
                    another task: their p50 against the same requests with no crowd
    breaker         the frozen expert's task: p50 before its breaker opened (the crowd's requests), right after,
                    and SETTLE_S later, against a healthy expert's p50 at that time

    python -m bench.faults [--quick] [--tries N] [--crowd N] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service_upstream import CoeServe, Upstream, UpstreamProcess, fault_config

SCENARIOS = (  # (row, expert)
    ("healthy", "healthy"),
    ("hang", "hang"),
    ("SIGSTOP (frozen process)", "frozen"),
    ("byte trickle (1 B/s)", "trickle"),
    ("mid-stream close, no finish", "partial"),
    ("mid-stream dropped connection", "cut"),
    ("mid-stream SSE error", "sse_error"),
    ("429 + Retry-After: 50", "limited"),
    ("HTTP 500", "errors"),
    ("dropped connection", "dropped"),
    ("closed port", "closed"),
)
QUICK_SCENARIOS = ("healthy", "partial", "sse_error", "limited", "errors", "closed")
COPIES = ("", "-s")
SETTLE_S = 5.0  # after the crowd, before the settled breaker measurement  # the non-streamed and the streamed copy of each faulty expert


def _request(client: httpx.Client, expert: str, stream: bool, text: str = "What is the capital of France?") -> dict:
    """One request; what the client got and when it had all of it."""
    body = {"model": f"coe/{expert}", "stream": stream, "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    if not stream:
        response = client.post("/v1/chat/completions", json=body)
        took = time.perf_counter() - started
        if response.status_code != 200:
            return {"s": took, "outcome": f"HTTP {response.status_code}", "called": True}
        coe = response.json()["coe"]
        return {"s": took, "outcome": f"answered by {coe['expert']}", "called": expert in coe["tried"]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        took = time.perf_counter() - started
        if response.status_code != 200:
            return {"s": took, "outcome": f"HTTP {response.status_code}", "called": True}
    parsed = [json.loads(event) for event in events if event != "[DONE]"]
    error = next((event["error"] for event in parsed if "error" in event), None)
    if error is not None:
        return {"s": took, "outcome": f"SSE error {error['code']} ({error.get('expert', '?')})", "called": True}
    coe = next(event["coe"] for event in parsed if event.get("coe"))
    return {"s": took, "outcome": f"answered by {coe['expert']}", "called": expert in coe["tried"]}


def _p50_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


def _row(results: list[dict]) -> dict:
    called = [r["s"] for r in results if r["called"]]
    skipped = [r["s"] for r in results if not r["called"]]
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {"p50_ms": _p50_ms(called), "max_ms": round(max(called) * 1000, 1) if called else None,
            "after_breaker_p50_ms": _p50_ms(skipped), "outcomes": outcomes}


def _crowd(client_url: str, frozen: UpstreamProcess, crowd: int, probes: int = 10,
           expert: str = "frozen-crowd") -> dict:
    """`crowd` requests at `expert`, frozen; meanwhile `probes` to a healthy expert of another task. The expert
    is the crowd's own (the rows before did not open its breaker)."""
    with httpx.Client(base_url=client_url, timeout=120, limits=httpx.Limits(max_connections=crowd + 20)) as client:
        def probe() -> float:
            return _request(client, "other", False, "OTHER question")["s"]

        quiet = [probe() for _ in range(probes)]
        frozen.pause()
        try:
            with concurrent.futures.ThreadPoolExecutor(crowd + 4) as pool:
                stuck = [pool.submit(_request, client, expert, False) for _ in range(crowd)]
                time.sleep(1.0)
                loaded = [probe() for _ in range(probes)]
                crowd_results = [future.result() for future in stuck]
            after = [_request(client, expert, False) for _ in range(probes)]
            time.sleep(SETTLE_S)
            settled = [_request(client, expert, False) for _ in range(probes)]
            settled_quiet = [probe() for _ in range(probes)]
        finally:
            frozen.resume()
    quiet_p50, loaded_p50 = statistics.median(quiet), statistics.median(loaded)
    before = [r["s"] for r in crowd_results]
    skipped = [r["s"] for r in after if not r["called"]]
    skipped_settled = [r["s"] for r in settled if not r["called"]]
    settled_p50 = statistics.median(settled_quiet)
    return {"crowd": crowd, "probe_quiet_p50_ms": _p50_ms(quiet), "probe_under_crowd_p50_ms": _p50_ms(loaded),
            "probe_x_quiet": round(loaded_p50 / quiet_p50, 2),
            "crowd_outcomes": _row(crowd_results)["outcomes"],
            "breaker_before_p50_ms": _p50_ms(before), "breaker_after_p50_ms": _p50_ms(skipped),
            "breaker_after_x_healthy": round(statistics.median(skipped) / quiet_p50, 2) if skipped else None,
            "breaker_settled_p50_ms": _p50_ms(skipped_settled), "healthy_settled_p50_ms": _p50_ms(settled_quiet),
            "breaker_settled_x_healthy": round(statistics.median(skipped_settled) / settled_p50, 2)
            if skipped_settled else None}


def measure(tries: int, crowd: int, scenarios: tuple[str, ...] | None = None) -> dict:
    chosen = [(label, expert) for label, expert in SCENARIOS if scenarios is None or expert in scenarios]
    with tempfile.TemporaryDirectory() as folder, Upstream() as upstream, UpstreamProcess() as frozen, \
            UpstreamProcess() as frozen_rows:
        config = fault_config(upstream.url, frozen_rows.url, COPIES)
        config["models"]["m-frozen-crowd"] = {"provider": "openai", "model": "answer", "base_url": frozen.url}
        config["experts"]["frozen-crowd"] = {"model": "m-frozen-crowd", "style": "plain"}
        service = CoeServe(config, folder, "faults", args=("--token-env", "COE_BENCH_NO_TOKEN"))
        rows = {}
        with service, httpx.Client(base_url=service.url, timeout=120) as client:
            _request(client, "healthy", False, "warm")
            frozen_rows.pause()
            try:
                for label, expert in chosen:
                    for stream, copy in ((False, ""), (True, "-s")):
                        name = expert if expert == "healthy" else expert + copy
                        rows[f"{label} ({'stream' if stream else 'invoke'})"] = _row(
                            [_request(client, name, stream) for _ in range(tries)])
            finally:
                frozen_rows.resume()
            crowd_row = _crowd(service.url, frozen, crowd) if crowd else None
    healthy = rows.get("healthy (invoke)", {}).get("p50_ms")
    for row in rows.values():
        row["x_healthy"] = round(row["p50_ms"] / healthy, 1) if healthy and row["p50_ms"] else None
    return {"tries": tries, "settings": "defaults (timeout_s 10, answer_timeout_s 60, max_retries 1, "
                                         "allowed_fails 3, cooldown_s 30, --deadline-s 120)",
            "rows": rows, "crowd": crowd_row}


def run(quick: bool = False, tries: int | None = None, crowd: int | None = None) -> dict:
    if quick:
        return measure(tries or 2, 20 if crowd is None else crowd, QUICK_SCENARIOS)
    return measure(tries or 5, 200 if crowd is None else crowd)


def format_lines(result: dict) -> list[str]:
    lines = ["", f"  Time to answer under expert faults (coe serve process, healthy fallback, {result['settings']}, "
                 f"{result['tries']} tries each)",
             f"  {'routed expert':<44}{'p50 ms':>9}{'max ms':>9}{'breaker open':>14}  outcomes"]

    def ms(value) -> str:
        return f"{value:.1f}" if value is not None else "-"

    for label, row in result["rows"].items():
        outcomes = ", ".join(f"{what} x{n}" for what, n in row["outcomes"].items())
        lines.append(f"  {label:<44}{ms(row['p50_ms']):>9}{ms(row['max_ms']):>9}"
                     f"{ms(row['after_breaker_p50_ms']):>14}  {outcomes}")
    crowd = result.get("crowd")
    if crowd:
        lines += [f"  crowd: {crowd['crowd']} requests at a SIGSTOPped expert; a healthy expert of another task: "
                  f"p50 {crowd['probe_quiet_p50_ms']} ms quiet, {crowd['probe_under_crowd_p50_ms']} ms under the "
                  f"crowd ({crowd['probe_x_quiet']}x)",
                  f"  breaker: the frozen expert's task p50 {crowd['breaker_before_p50_ms']} ms before it opened, "
                  f"{crowd['breaker_after_p50_ms']} ms right after ({crowd['breaker_after_x_healthy']}x the quiet "
                  f"healthy p50; every request is slower while the crowd's fallbacks drain), "
                  f"{crowd['breaker_settled_p50_ms']} ms {SETTLE_S:g} s later against a healthy expert's "
                  f"{crowd['healthy_settled_p50_ms']} ms ({crowd['breaker_settled_x_healthy']}x)"]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the fast faults, 2 tries, a crowd of 20")
    parser.add_argument("--tries", type=int, help="tries per fault and mode (default 5, --quick 2)")
    parser.add_argument("--crowd", type=int, help="requests stuck at the frozen expert (default 200, --quick 20)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick, args.tries, args.crowd)
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
