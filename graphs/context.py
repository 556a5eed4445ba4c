"""Per-run control: what a caller may choose for one run, read by the nodes through LangGraph's `Runtime`.

    graph.invoke({"messages": [...]}, context={"expert": "coder"})          # pin an expert
    graph.invoke({"query": "..."}, context={"task": "math", "fanout": 2})   # pin a task, ask two experts

Studio shows these fields as an assistant's configuration. Every field is optional; an unset field keeps the
config's behaviour. Values are checked twice: their shape here (pydantic, so `graph.invoke(..., context={...})`
with a bad value fails at once naming the field), names of experts and tasks against the running graph by
`check_context` (the first node), which lists the valid names.
"""

from __future__ import annotations

import difflib
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field


class InvalidContextError(ValueError):
    """A run context that names an expert or task the graph does not have, or a knob its classifier lacks."""


class RouterContext(BaseModel):
    """What one run may override; the routing decision records every field that was set (`overrides`)."""

    model_config = ConfigDict(extra="forbid")

    expert: str | None = Field(None, description="answer with this expert (its fallbacks stay the task map's)")
    task: str | None = Field(None, description="skip the classifier: route as this task")
    threshold: float | None = Field(None, ge=0, le=1, description="classifier confidence needed (hybrid: for knn)")
    fanout: int | None = Field(None, ge=1, le=16, description="ask the top-k experts of the route and aggregate")
    cost_weight: float | None = Field(
        None, ge=0, description="trade leaderboard accuracy for price: rank experts by accuracy - weight x price "
                                "(price per 1M tokens relative to the dearest expert)")

    def overrides(self) -> dict:
        return self.model_dump(exclude_none=True)


def run_context(runtime) -> RouterContext:
    """The run's context, or the defaults when the caller gave none (a dict is validated here too)."""
    context = getattr(runtime, "context", None)
    if context is None:
        return RouterContext()
    if isinstance(context, RouterContext):
        return context
    return RouterContext.model_validate(context)


def check_context(context: RouterContext, experts: Iterable[str], tasks: Iterable[str]) -> None:
    """Names in the context must exist in the running graph; the error lists the valid ones."""
    experts, tasks = list(experts), list(tasks)
    if context.expert is not None and context.expert not in experts:
        raise InvalidContextError(f"context.expert: no expert named {context.expert!r} (experts: {sorted(experts)})")
    if context.task is not None and context.task not in tasks:
        raise InvalidContextError(f"context.task: no task named {context.task!r} (tasks: {sorted(tasks)})")


_NOT_CONTEXT_PREFIXES = ("__", "langgraph_", "checkpoint_", "thread_", "run_", "assistant_", "graph_", "user_")


def misspelt_context_keys(keys: Iterable[object]) -> dict[str, str]:
    """Keys of a `configurable` that are not context fields but read like one (`expret`, `Expert`), each with the
    field it resembles. LangGraph's Agent Server drops unknown context keys before the graph sees them (and keeps
    an assistant's in `configurable`), so a typo would otherwise be accepted in silence."""
    fields = list(RouterContext.model_fields)
    found = {}
    for key in keys:
        if not isinstance(key, str) or key in fields or key.startswith(_NOT_CONTEXT_PREFIXES):
            continue
        close = difflib.get_close_matches(key.lower(), fields, n=1, cutoff=0.8)
        if close:
            found[key] = close[0]
    return found


def check_configurable(configurable: dict | None, where: str = "configurable") -> None:
    """Refuse a `configurable` key that is a misspelt context field, naming the field it resembles."""
    misspelt = misspelt_context_keys(configurable or {})
    if misspelt:
        named = ", ".join(f"{key!r} (did you mean {field!r}?)" for key, field in misspelt.items())
        raise InvalidContextError(f"{where}: unknown context key {named}; context fields: "
                                  f"{sorted(RouterContext.model_fields)}")
