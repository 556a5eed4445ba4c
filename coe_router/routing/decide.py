"""The routing decision alone: where a query would go, without asking any expert.

It runs the compiled graph itself (its router step: intake, retriever, classifier and expert choice, what a
served request runs) and stops at the router's update, so what it measures and returns is what the deployed
graph decides; the benchmarks route through it, never through node functions, whose signatures are internal.
With no callbacks, the step's parts are plain calls; a served request has callbacks (its watch, a stream), so
there they are child runs too (about 0.15 ms each, nodes/composite.py).
"""

from __future__ import annotations

from typing import Any

from coe_router.schema import RoutingDecision


class NoDecisionError(RuntimeError):
    """The graph ended or paused (human review) before its router decided."""


def decide(graph, query: str | dict[str, Any], *, context: dict | None = None,
           config: dict | None = None) -> RoutingDecision:
    """The routing decision the single-shot `graph` makes for `query` (a text, or the graph's input dict)."""
    inputs = {"query": query} if isinstance(query, str) else query
    for update in graph.stream(inputs, config, context=context, stream_mode="updates"):
        routed = update.get("router") or update.get("review")
        if routed and routed.get("decision") is not None:  # None: the router left it to the review node
            return routed["decision"]
        if "__interrupt__" in update:
            raise NoDecisionError("the graph paused for human review before routing (persistence.review_unknown)")
    raise NoDecisionError("the graph ended without a routing decision (a plan? decide() takes the single-shot graph)")
