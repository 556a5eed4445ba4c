"""Tracing: the routing decision and the run's cost on the router's own run (annotations, usage), and exits that
a tracer cannot hang (exit).

    from coe_router.tracing import flush_traces     # call before your app exits, with LANGSMITH_USE_DAEMON=true
"""

from coe_router.tracing.exit import bound_trace_exit, flush_traces, tracing_enabled
from coe_router.tracing.usage import CallUsage

__all__ = ["CallUsage", "bound_trace_exit", "flush_traces", "tracing_enabled"]
