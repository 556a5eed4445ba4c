"""Retriever node: the query's k nearest labelled examples, for the knn vote and for Prompt 3's context."""

from __future__ import annotations

from typing import Callable

from coe_router.defaults import MAX_QUERY_CHARS
from coe_router.graphs.state import RouterState
from coe_router.inputs import check_query
from coe_router.retrieval.store import ExampleStore


def make_retriever_node(store: ExampleStore | None, k: int,
                        max_query_chars: int = MAX_QUERY_CHARS) -> Callable[[RouterState], dict]:
    """The graph's first node, so it also refuses bad queries (InvalidQueryError) before any model runs.

    With no store (an llm classifier without examples) it retrieves nothing and costs nothing.
    """

    def retriever(state: RouterState) -> dict:
        check_query(state.get("query"), max_query_chars)
        if store is None:
            return {"retrieved": []}
        return {"retrieved": store.search(state["query"], k)}

    return retriever
