"""Run in a fresh process by bench.extras: peak RSS of the embedded default, build_graph() + one question."""

from __future__ import annotations

import json
import os
import resource
import time

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.pop("LANGSMITH_TRACING", None)


def _vm_hwm_kb() -> int:
    """Peak RSS of this process image. Not ru_maxrss: after fork + exec it still counts the parent's pages from
    before the exec, so a child of the (large) benchmark process would report the benchmark's own size."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    start = time.perf_counter()
    from coe_router import build_graph

    graph = build_graph()
    built = time.perf_counter()
    result = graph.invoke({"query": "What is the derivative of x^3 + 2x with respect to x?"})
    asked = time.perf_counter()
    peak_kb = _vm_hwm_kb()
    print(json.dumps({
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "build_graph_s": round(built - start, 2),
        "one_question_s": round(asked - built, 2),
        "routed_to": result["decision"].expert, "task": result["decision"].task,
        "classifier": result["decision"].classifier,
    }))


if __name__ == "__main__":
    main()
