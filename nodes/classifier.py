"""Classifier node: decides the query's task from the query, its options and the retrieved examples."""

from __future__ import annotations

from typing import Callable, Iterable

from coe_router.classifiers import TaskClassifier
from coe_router.graphs.state import RouterState
from coe_router.schema import TaskDecision


def make_classifier_node(classify: TaskClassifier, tasks: Iterable[str] = ()) -> Callable[[RouterState], dict]:
    """A planner's task hint is taken only when it names a configured task; anything else is classified as usual."""
    known = set(tasks)

    def classifier(state: RouterState) -> dict:
        hint = state.get("task_hint")
        if hint and hint in known:
            return {"task_decision": TaskDecision(task=hint, confidence=1.0, source="planner")}
        return {"task_decision": classify(state["query"], state.get("options"), state.get("retrieved", []))}

    return classifier
