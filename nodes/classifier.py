"""Classifier node: decides the query's task from the query, its options and the retrieved examples."""

from __future__ import annotations

from typing import Callable

from coe_router.classifiers import TaskClassifier
from coe_router.graphs.state import RouterState


def make_classifier_node(classify: TaskClassifier) -> Callable[[RouterState], dict]:
    def classifier(state: RouterState) -> dict:
        decision = classify(state["query"], state.get("options"), state.get("retrieved", []))
        return {"task_decision": decision}

    return classifier
