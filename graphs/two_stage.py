"""The CoE-Ops single-shot graph: retriever -> classifier -> router -> expert, with CCoE fan-out.

When the router consults several experts (rule-based gating matched several tasks, or `fanout: k`), it sends the
query to each in parallel (LangGraph Send) and the aggregator combines their answers.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from coe_router.defaults import MAX_QUERY_CHARS, RUN_NAME
from coe_router.graphs.context import RouterContext
from coe_router.nodes import (
    make_aggregator_node,
    make_classifier_node,
    make_consult_node,
    make_expert_node,
    make_intake_node,
    make_retriever_node,
    make_router_node,
)
from coe_router.retrieval.store import ExampleStore
from coe_router.routing.classifiers import TaskClassifier
from coe_router.routing.pool import ExpertPool
from coe_router.routing.query_router import LiveQueryRouter

from .state import InputState, OutputState, RouterState, read


def dispatch(state: RouterState) -> Literal["expert"] | list[Send]:
    """One expert, or a Send to `consult` for each expert of the fan-out (best-ranked first)."""
    consult = read(state, "route").consult
    if not consult:
        return "expert"
    shared = {key: state.get(key) for key in ("query", "messages", "options", "context", "decision", "sampling")}
    return [Send("consult", {**shared, "consult_expert": name, "consult_rank": rank}) for rank, name in enumerate(consult)]


def build_two_stage_graph(
    *,
    classifier: TaskClassifier,
    pool: ExpertPool,
    store: ExampleStore | None,
    tasks: list[str] | None = None,
    k: int = 5,
    max_query_chars: int = MAX_QUERY_CHARS,
    review_unknown: bool = False,
    fanout: int = 1,
    synthesizer: BaseChatModel | None = None,
    checkpointer=None,
    prices: dict[str, float] | None = None,
    threshold: float = 0.5,
    query_router: LiveQueryRouter | None = None,
    name: str = RUN_NAME,
):
    """Compile the graph from ready parts; every dependency is injected, so tests pass fakes for any of them.

    `prices` (expert -> price per 1M tokens) serve cost-aware routes; `threshold` is the confidence under which a
    follow-up turn is classified together with the previous one; `query_router` routes each query by its
    neighbours' recorded outcomes instead of by the task map.
    """
    tasks = list(tasks or pool.task_map.ranking)
    retrieve = (lambda text: store.search(text, k)) if store is not None else None
    builder = StateGraph(RouterState, input_schema=InputState, output_schema=OutputState,
                         context_schema=RouterContext)
    builder.add_node("intake", make_intake_node(max_query_chars, pool.names, tasks))
    builder.add_node("retriever", make_retriever_node(store, k))
    builder.add_node("classifier", make_classifier_node(classifier, tasks, retrieve, threshold))
    builder.add_node("router", make_router_node(pool, review_unknown, fanout, prices, query_router))
    builder.add_node("expert", make_expert_node(pool))
    builder.add_node("consult", make_consult_node(pool))
    builder.add_node("aggregator", make_aggregator_node(synthesizer))
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "retriever")
    builder.add_edge("retriever", "classifier")
    builder.add_edge("classifier", "router")
    builder.add_conditional_edges("router", dispatch, ["expert", "consult"])
    builder.add_edge("consult", "aggregator")
    builder.add_edge("expert", END)
    builder.add_edge("aggregator", END)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    graph.pool = pool  # push/pop experts on the live graph: graph.pool.add(...), graph.pool.remove(...)
    graph.query_router = query_router  # served feedback adds to its memory (coe_router/feedback.py)
    return graph
