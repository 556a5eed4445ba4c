"""State schemas of the routing graphs: what goes in, what flows between nodes, what comes out.

`typing_extensions.TypedDict`, so pydantic (and so LangGraph Studio and `as_tool`) can read the schemas on
Python 3.11. Keys holding typed values declare a reducer that accepts plain dicts too: Studio's state editor and
a JSON client send dicts, and the nodes always read typed values.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from coe_router.schema import Consultation, Plan, RetrievedExample, Route, RoutingDecision, Step, TaskDecision


def typed(kind: Any) -> Callable[[Any, Any], Any]:
    """A last-value reducer that validates the new value as `kind` (a pydantic model, or a list of them)."""
    adapter = TypeAdapter(kind)

    def keep_latest(_left: Any, right: Any) -> Any:
        if right is None or isinstance(right, BaseModel):
            return right
        return adapter.validate_python(right)

    return keep_latest


def consultations_reducer(left: list[Consultation] | None, right: list | None) -> list[Consultation]:
    """Fan-out answers accumulate across parallel branches; `None` (sent by the router) starts a new request."""
    if right is None:
        return []
    return [*(left or []), *TypeAdapter(list[Consultation]).validate_python(right)]


STATE_TYPES: dict[str, TypeAdapter] = {
    "route": TypeAdapter(Route),
    "decision": TypeAdapter(RoutingDecision),
    "task_decision": TypeAdapter(TaskDecision),
    "retrieved": TypeAdapter(list[RetrievedExample]),
    "consultations": TypeAdapter(list[Consultation]),
    "plan": TypeAdapter(Plan),
    "steps": TypeAdapter(list[Step]),
}


def read(state: dict, key: str, default: Any = None) -> Any:
    """A typed value of the state, whatever shape it was stored in. A checkpointer may hand back plain dicts (a
    server that deserializes strictly, a state edited as JSON): nodes read through this, never `state[key].x`."""
    value = state.get(key)
    if value is None:
        return default
    return STATE_TYPES[key].validate_python(value)


keep_decision = typed(RoutingDecision)
keep_retrieved = typed(list[RetrievedExample])
keep_task_decision = typed(TaskDecision)
keep_route = typed(Route)
keep_plan = typed(Plan)
keep_steps = typed(list[Step])


class InputState(TypedDict):
    """A query as text (`query`) or as a conversation (`messages`, the last human turn is routed), with its
    options when it is a multiple-choice question.

    `tools` / `tool_choice` (OpenAI tool schemas) are bound to the routed expert, `sampling` (temperature,
    max_tokens, top_p, stop, seed, penalties, response_format) goes with its call. `context` (outputs of earlier
    plan steps) reaches the expert but not the retriever or classifier, so a step is classified by its own text;
    `task_hint` is the planner's task for a step, used when it names a configured task.
    """

    query: NotRequired[str]
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    options: NotRequired[list[str] | None]
    tools: NotRequired[list[dict] | None]
    tool_choice: NotRequired[str | dict | None]
    sampling: NotRequired[dict | None]
    context: NotRequired[str | None]
    task_hint: NotRequired[str | None]


class OutputState(TypedDict):
    """The answer (for multiple choice, `choice` holds the letter), the routing decision behind it, and the
    conversation with the expert's reply appended (an AIMessage named after the expert)."""

    answer: str
    choice: NotRequired[str | None]
    decision: Annotated[RoutingDecision, keep_decision]
    messages: Annotated[list[AnyMessage], add_messages]


class RouterState(InputState, total=False):
    """Everything a single-shot run accumulates; nodes return only the keys they set."""

    routed_message_id: str | None
    retrieved: Annotated[list[RetrievedExample], keep_retrieved]
    task_decision: Annotated[TaskDecision, keep_task_decision]
    route: Annotated[Route, keep_route]
    decision: Annotated[RoutingDecision, keep_decision]
    answer: str
    choice: str | None
    consultations: Annotated[list[Consultation], consultations_reducer]
    consult_expert: str
    consult_rank: int


class DispatchState(TypedDict, total=False):
    """What the edge after the router reads (graphs/two_stage.py `dispatch`): LangGraph hands a conditional edge
    only the channels its state type names, so the edge does not copy every channel of the run to choose a node."""

    route: Annotated[Route, keep_route]
    query: str
    messages: Annotated[list[AnyMessage], add_messages]
    options: list[str] | None
    context: str | None
    decision: Annotated[RoutingDecision, keep_decision]
    sampling: dict | None


class PlanOutputState(OutputState):
    """A planned run also returns its steps, in order, and whether the plan was used or fell back."""

    steps: Annotated[list[Step], keep_steps]
    plan_status: str


class PlanState(InputState, total=False):
    routed_message_id: str | None
    plan: Annotated[Plan, keep_plan]
    plan_status: str
    steps: Annotated[list[Step], keep_steps]
    decision: Annotated[RoutingDecision, keep_decision]
    answer: str
    choice: str | None
