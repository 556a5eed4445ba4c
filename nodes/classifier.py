"""Classifier node: decides the query's task from the query, its options and the retrieved examples.

In a conversation a follow-up ("and the second one?") often says nothing about its task on its own; when the
last turn cannot be placed with confidence, the node classifies it once more together with the previous human
turn and keeps whichever decision is surer (source `...+conversation`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from coe_router.defaults import UNKNOWN_TASK
from coe_router.graphs.context import InvalidContextError, RouterContext, run_context
from coe_router.graphs.state import RouterState, read
from coe_router.inputs import message_text
from coe_router.routing.classifiers import TaskClassifier
from coe_router.schema import RetrievedExample, TaskDecision

Retrieve = Callable[[str], Sequence[RetrievedExample]]


def previous_human_turn(state: RouterState) -> str | None:
    """The human turn before the routed one, if the conversation has one."""
    turns = [m for m in state.get("messages") or [] if isinstance(m, HumanMessage)]
    routed = state.get("routed_message_id")
    earlier = [m for m in turns if m.id != routed]
    return message_text(earlier[-1].content) if earlier and turns and turns[-1].id == routed else None


def make_classifier_node(classify: TaskClassifier, tasks: Iterable[str] = (), retrieve: Retrieve | None = None,
                         threshold: float = 0.5) -> Callable[[RouterState, Runtime[RouterContext]], dict]:
    """The classifier decides; a planner's task hint is used only when the classifier cannot place the subtask
    (and only if it names a configured task). Small planners copy task names from their prompt, so their hints
    are weaker evidence than the retrieved labelled examples. `threshold`: below this confidence a follow-up is
    classified again with the previous turn (the run context's `threshold` replaces it)."""
    known = set(tasks)

    def classifier(state: RouterState, runtime: Runtime[RouterContext]) -> dict:
        context = run_context(runtime)
        if context.task is not None:
            return {"task_decision": TaskDecision(task=context.task, confidence=1.0, source="context")}
        decide, needed = classify, threshold
        if context.threshold is not None:
            try:
                decide, needed = classify.with_threshold(context.threshold), context.threshold
            except ValueError as exc:
                raise InvalidContextError(f"context.threshold: {exc}") from None
        decision = decide(state["query"], state.get("options"), read(state, "retrieved", []))
        update: dict = {}
        earlier = previous_human_turn(state)
        if earlier and (decision.task == UNKNOWN_TASK or decision.confidence < needed):
            joined = f"{earlier}\n{state['query']}"
            retrieved = list(retrieve(joined)) if retrieve else read(state, "retrieved", [])
            second = decide(joined, state.get("options"), retrieved)
            if second.task != UNKNOWN_TASK and (decision.task == UNKNOWN_TASK or second.confidence > decision.confidence):
                decision = second.model_copy(update={"source": f"{second.source}+conversation"})
                update["retrieved"] = retrieved
        hint = state.get("task_hint")
        if decision.task == UNKNOWN_TASK and hint in known:
            decision = TaskDecision(task=hint, confidence=0.0, source="planner")
        return {**update, "task_decision": decision}

    return classifier
