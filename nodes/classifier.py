"""Classifier node: decides the query's task from the query, its options and the retrieved examples."""

from __future__ import annotations

from typing import Callable, Iterable

from coe_router.defaults import UNKNOWN_TASK
from coe_router.graphs.state import RouterState
from coe_router.routing.classifiers import TaskClassifier
from coe_router.schema import TaskDecision


def make_classifier_node(classify: TaskClassifier, tasks: Iterable[str] = ()) -> Callable[[RouterState], dict]:
    """The classifier decides; a planner's task hint is used only when the classifier cannot place the subtask
    (and only if it names a configured task). Small planners copy task names from their prompt, so their hints
    are weaker evidence than the retrieved labelled examples."""
    known = set(tasks)

    def classifier(state: RouterState) -> dict:
        decision = classify(state["query"], state.get("options"), state.get("retrieved", []))
        hint = state.get("task_hint")
        if decision.task == UNKNOWN_TASK and hint in known:
            return {"task_decision": TaskDecision(task=hint, confidence=0.0, source="planner")}
        return {"task_decision": decision}

    return classifier
