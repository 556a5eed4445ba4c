"""How long a process takes to exit with LangSmith tracing on and no reachable endpoint, with and without the
bound the CLI applies (coe_router.tracing). Runs child processes against a closed local port; nothing leaves the
machine.

    python -m bench.trace_exit [--runs 3] [--flush-timeout 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROBE = """
import sys
bounded = sys.argv[1] == "bounded"
if bounded:
    from coe_router.tracing import bound_trace_exit, flush_traces
    bound_trace_exit()
from langchain_core.runnables import RunnableLambda
RunnableLambda(lambda x: x + 1).invoke(1, config={"run_name": "probe"})
if bounded:
    flush_traces()
"""


def exit_time(mode: str, flush_timeout: float) -> float:
    env = {**os.environ, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "unused",
           "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "COE_TRACE_FLUSH_TIMEOUT_S": str(flush_timeout)}
    env.pop("LANGSMITH_USE_DAEMON", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, timeout=600)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flush-timeout", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {}
    for mode in ("untreated", "bounded"):
        times = [exit_time(mode, args.flush_timeout) for _ in range(args.runs)]
        result[mode] = {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
    result["ratio"] = round(result["untreated"]["median_s"] / result["bounded"]["median_s"], 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"exit with tracing on, endpoint unreachable (flush timeout {args.flush_timeout} s, {args.runs} runs):")
        for mode in ("untreated", "bounded"):
            print(f"  {mode:<10} median {result[mode]['median_s']:6.2f} s   runs {result[mode]['runs_s']}")
        print(f"  untreated / bounded = {result['ratio']}x")


if __name__ == "__main__":
    main()
