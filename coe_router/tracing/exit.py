"""LangSmith tracing that cannot hang the process on exit.

Tracing is off unless LANGSMITH_TRACING=true. With it on and no reachable endpoint, langsmith's background sender
keeps the interpreter alive at exit while it retries: 13 s measured here, minutes elsewhere. The CLI therefore
runs langsmith's threads as daemons (LANGSMITH_USE_DAEMON=true, unless set otherwise) and, before exiting, gives
pending traces a bounded time to flush (COE_TRACE_FLUSH_TIMEOUT_S, default 5 s).
"""

from __future__ import annotations

import os
import threading


def tracing_enabled() -> bool:
    value = os.environ.get("LANGSMITH_TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    return value.strip().lower() in ("1", "true", "yes")


def bound_trace_exit() -> None:
    """Call before any tracer is created: langsmith reads LANGSMITH_USE_DAEMON when its client starts."""
    if tracing_enabled():
        os.environ.setdefault("LANGSMITH_USE_DAEMON", "true")


def flush_traces(timeout_s: float | None = None) -> bool:
    """Wait at most `timeout_s` for pending traces to be sent; True if everything was flushed in time."""
    if not tracing_enabled():
        return True
    from langchain_core.tracers.langchain import wait_for_all_tracers

    if timeout_s is None:
        timeout_s = float(os.environ.get("COE_TRACE_FLUSH_TIMEOUT_S", "5"))
    flusher = threading.Thread(target=wait_for_all_tracers, name="coe-trace-flush", daemon=True)
    flusher.start()
    flusher.join(timeout_s)
    return not flusher.is_alive()
