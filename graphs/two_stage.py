"""The CoE-Ops single-shot graph: retriever -> classifier -> router -> expert."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from coe_router.classifiers import TaskClassifier
from coe_router.config import ExpertSpec
from coe_router.example_store import ExampleStore
from coe_router.nodes import (
    TaskMap,
    make_classifier_node,
    make_expert_node,
    make_retriever_node,
    make_router_node,
)

from .state import InputState, OutputState, RouterState


def build_two_stage_graph(
    *,
    classifier: TaskClassifier,
    task_map: TaskMap,
    experts: dict[str, ExpertSpec],
    models: dict[str, BaseChatModel],
    store: ExampleStore | None,
    k: int = 5,
    max_query_chars: int = 20_000,
    review_unknown: bool = False,
    checkpointer=None,
    name: str = "coe",
):
    """Compile the graph from ready parts; every dependency is injected, so tests pass fakes for any of them."""
    missing = sorted({spec.model for spec in experts.values()} - set(models))
    if missing:
        raise ValueError(f"no model object given for {missing}")
    builder = StateGraph(RouterState, input_schema=InputState, output_schema=OutputState)
    builder.add_node("retriever", make_retriever_node(store, k, max_query_chars))
    builder.add_node("classifier", make_classifier_node(classifier))
    builder.add_node("router", make_router_node(task_map, review_unknown))
    builder.add_node("expert", make_expert_node(experts, models))
    builder.add_edge(START, "retriever")
    builder.add_edge("retriever", "classifier")
    builder.add_edge("classifier", "router")
    builder.add_edge("router", "expert")
    builder.add_edge("expert", END)
    return builder.compile(checkpointer=checkpointer, name=name)
