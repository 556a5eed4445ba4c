"""State schemas of the routing graphs: what goes in, what flows between nodes, what comes out."""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from coe_router.schema import Consultation, Plan, RetrievedExample, Route, RoutingDecision, Step, TaskDecision


def consultations_reducer(left: list[Consultation] | None, right: list[Consultation] | None) -> list[Consultation]:
    """Fan-out answers accumulate across parallel branches; `None` (sent by the router) starts a new request."""
    if right is None:
        return []
    return [*(left or []), *right]


class InputState(TypedDict):
    """A query, with its options when it is a multiple-choice question.

    `context` (outputs of earlier plan steps) reaches the expert but not the retriever or classifier, so a step is
    classified by its own text; `task_hint` is the planner's task for a step, used when it names a configured task.
    """

    query: str
    options: NotRequired[list[str] | None]
    context: NotRequired[str | None]
    task_hint: NotRequired[str | None]


class OutputState(TypedDict):
    """The answer (for multiple choice, `choice` holds the letter) and the routing decision behind it."""

    answer: str
    choice: NotRequired[str | None]
    decision: RoutingDecision


class RouterState(InputState, total=False):
    """Everything a single-shot run accumulates; nodes return only the keys they set."""

    retrieved: list[RetrievedExample]
    task_decision: TaskDecision
    route: Route
    decision: RoutingDecision
    answer: str
    choice: str | None
    consultations: Annotated[list[Consultation], consultations_reducer]
    consult_expert: str
    consult_rank: int


class PlanOutputState(OutputState):
    """A planned run also returns its steps, in order, and whether the plan was used or fell back."""

    steps: list[Step]
    plan_status: str


class PlanState(InputState, total=False):
    plan: Plan
    plan_status: str
    steps: list[Step]
    decision: RoutingDecision
    answer: str
    choice: str | None
