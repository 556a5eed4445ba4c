"""State schemas of the routing graphs: what goes in, what flows between nodes, what comes out."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from coe_router.schema import RetrievedExample, Route, RoutingDecision, TaskDecision


class InputState(TypedDict):
    """A query, with its options when it is a multiple-choice question."""

    query: str
    options: NotRequired[list[str] | None]


class OutputState(TypedDict):
    """The answer (for multiple choice, `choice` holds the letter) and the routing decision behind it."""

    answer: str
    choice: NotRequired[str | None]
    decision: RoutingDecision


class RouterState(InputState, total=False):
    """Everything a single-shot run accumulates; each node returns only the keys it sets (no reducers needed)."""

    retrieved: list[RetrievedExample]
    task_decision: TaskDecision
    route: Route
    decision: RoutingDecision
    answer: str
    choice: str | None
