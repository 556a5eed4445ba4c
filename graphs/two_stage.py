"""The CoE-Ops single-shot graph: router (intake -> retriever -> classifier -> expert choice) -> expert, with CCoE
fan-out.

The routing decision is one graph step, the `router` node, made of four parts that each are their own module and
their own traced run (nodes/composite.py says why one step): the intake picks the turn to route and checks the
run's context, the retriever finds labelled examples like it, the classifier puts it in a task (CoE-Ops' first
stage), and the expert choice maps the task to an expert (the second stage: the task map, or the query-level
router's estimate).

A query the classifier could not place, with `review_unknown`, goes on to the review node, which pauses for a
person (nodes/review.py). When the router consults several experts (rule-based gating matched several tasks, or
`fanout: k`), it sends the query to each in parallel (LangGraph Send) and the aggregator combines their answers.
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
    make_composite_node,
    make_consult_node,
    make_expert_node,
    make_intake_node,
    make_retriever_node,
    make_review_node,
    make_router_node,
)
from coe_router.retrieval.store import ExampleStore
from coe_router.routing.classifiers import TaskClassifier
from coe_router.routing.pool import ExpertPool
from coe_router.routing.query_router import LiveQueryRouter

from .state import DispatchState, InputState, OutputState, RouterState, read


def dispatch(state: DispatchState) -> Literal["expert", "review"] | list[Send]:
    """One expert, or a Send to `consult` for each expert of the fan-out (best-ranked first); `review` when the
    router left the route to a person (persistence.review_unknown)."""
    route = read(state, "route")
    if route is None:
        return "review"
    consult = route.consult
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
    builder.add_node("router", make_composite_node([
        ("intake", make_intake_node(max_query_chars, pool.names, tasks)),
        ("retriever", make_retriever_node(store, k)),
        ("classifier", make_classifier_node(classifier, tasks, retrieve, threshold)),
        ("expert_choice", make_router_node(pool, review_unknown, fanout, prices, query_router)),
    ]))
    builder.add_node("review", make_review_node(pool, fanout))
    builder.add_node("expert", make_expert_node(pool))
    builder.add_node("consult", make_consult_node(pool))
    builder.add_node("aggregator", make_aggregator_node(synthesizer))
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", dispatch, ["expert", "consult", "review"])
    builder.add_conditional_edges("review", dispatch, ["expert", "consult"])
    builder.add_edge("consult", "aggregator")
    builder.add_edge("expert", END)
    builder.add_edge("aggregator", END)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    graph.pool = pool  # push/pop experts on the live graph: graph.pool.add(...), graph.pool.remove(...)
    graph.query_router = query_router  # served feedback adds to its memory (coe_router/feedback.py)
    return graph
