"""Retriever node: the query's k nearest labelled examples, for the knn vote and for Prompt 3's context."""

from __future__ import annotations

from typing import Callable

from coe_router.graphs.state import RouterState
from coe_router.retrieval.store import ExampleStore


def make_retriever_node(store: ExampleStore | None, k: int) -> Callable[[RouterState], dict]:
    """With no store (an llm classifier without examples) it retrieves nothing and costs nothing."""

    def retriever(state: RouterState) -> dict:
        if store is None:
            return {"retrieved": []}
        return {"retrieved": store.search(state["query"], k)}

    return retriever
