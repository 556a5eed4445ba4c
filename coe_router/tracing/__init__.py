"""Tracing: the routing decision on the router's own run (annotations), and exits that a tracer cannot hang (exit).

    from coe_router.tracing import flush_traces     # call before your app exits, with LANGSMITH_USE_DAEMON=true
"""

from coe_router.tracing.exit import bound_trace_exit, flush_traces, tracing_enabled

__all__ = ["bound_trace_exit", "flush_traces", "tracing_enabled"]
