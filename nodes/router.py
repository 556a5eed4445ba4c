"""Router node: task -> expert through the task map (CoE-Ops eq. 3, 5); "unknown" -> the best-average expert (eq. 8).

The map holds a ranked list per task (best first); the rest of the list, then every other expert in best-average
order, is the fallback chain the expert node walks when an expert fails.
"""

from __future__ import annotations

from typing import Callable

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from coe_router.defaults import UNKNOWN_TASK
from coe_router.graphs.context import InvalidContextError, RouterContext, run_context
from coe_router.graphs.state import RouterState, read
from coe_router.routing.pool import ExpertPool
from coe_router.routing.query_router import LiveQueryRouter
from coe_router.routing.task_map import TaskMap
from coe_router.schema import Candidate, Route, RoutingDecision, TaskDecision
from coe_router.tracing.annotations import annotate_router_run


def consulted_experts(task_map: TaskMap, task: TaskDecision, route: Route, fanout: int) -> list[str]:
    """Experts to ask in parallel: the best expert of every task a gating rule matched (CCoE eq. 2), or the top
    `fanout` of the route's ranked chain. One expert means no fan-out."""
    if len(task.tasks) > 1:
        experts = list(dict.fromkeys(task_map.route(t).expert for t in task.tasks))
    else:
        experts = [route.expert, *route.fallbacks][:fanout]
    return experts if len(experts) > 1 else []


def pinned_route(task_map: TaskMap, task: str, expert: str) -> Route:
    """The context's expert first, then the task's usual chain as fallbacks."""
    usual = task_map.route(task)
    rest = [e for e in [usual.expert, *usual.fallbacks] if e != expert]
    return Route(expert=expert, fallbacks=rest, reason="pinned by the run context")


def query_level_route(query_router: LiveQueryRouter, pool: ExpertPool, task: str, query: str,
                      cost_weight: float | None, prices: dict[str, float]) -> tuple[Route, list[Candidate]]:
    """The query-level router's ranking of the experts it has outcomes for, then the task map's chain for the rest."""
    ranked, expected = query_router.rank(query, cost_weight, task)
    live = set(pool.names())
    chain = [e for e in ranked if e in live]
    if len(chain) < len(live):  # experts with no outcomes follow in the task map's order
        usual = pool.task_map.route(task)
        chain += [e for e in [usual.expert, *usual.fallbacks] if e not in chain]
    candidates = [Candidate(expert=e, expected_score=expected.get(e), price=prices.get(e)) for e in ranked if e in live]
    return Route(expert=chain[0], fallbacks=chain[1:], reason=query_router.reason), candidates


# What the router step leaves when the review node is to route the query (nodes/review.py).
LEFT_TO_REVIEW = {"route": None, "decision": None, "consultations": None}

_last_version: tuple[TaskMap | None, str] = (None, "")


def task_map_version(task_map: TaskMap) -> str:
    """`task_map.version`, hashed once per map: the pool replaces its map whole on every change (never edits it),
    and hashing it costs about 0.1 ms a decision right after the query's forward pass."""
    global _last_version
    known, version = _last_version
    if known is not task_map:
        version = task_map.version
        _last_version = (task_map, version)
    return version


def route_update(task_map: TaskMap, state: RouterState, task: TaskDecision, route: Route, candidates: list[Candidate],
                 context: RouterContext, fanout: int, config: RunnableConfig) -> dict:
    """The state update of a chosen route: who is consulted, and the routing decision on the router's run."""
    width = context.fanout if context.fanout is not None else fanout
    pinned = context.expert is not None or context.fanout == 1   # one expert asked for: no gating fan-out
    consult = [] if pinned else consulted_experts(task_map, task, route, width)
    route = route.model_copy(update={"consult": consult})
    decision = RoutingDecision(
        task=task.task,
        confidence=task.confidence,
        classifier=task.source,
        retrieved=read(state, "retrieved", []),
        expert=route.expert,
        fallbacks=route.fallbacks,
        task_map_version=task_map_version(task_map),
        overrides=context.overrides(),
        candidates=candidates,
    )
    annotate_router_run(config, decision)
    return {"route": route, "decision": decision, "consultations": None}


def make_router_node(pool: ExpertPool, review_unknown: bool = False, fanout: int = 1,
                     prices: dict[str, float] | None = None, query_router: LiveQueryRouter | None = None,
                     ) -> Callable[[RouterState, Runtime[RouterContext]], dict]:
    """Routes with the pool's current task map, so experts pushed or popped at run time take effect at once; with
    a `query_router` (config `router.kind: knn`), by each expert's expected score on the query's neighbourhood.

    The run context may pin an expert, set the fan-out, or weigh price against expected score or leaderboard
    accuracy (`cost_weight`, with `prices` per expert); the decision records what it overrode. With
    `review_unknown`, a task the classifier could not place gets no route here: the graph goes on to the review
    node (nodes/review.py), which pauses for a person."""

    def router(state: RouterState, runtime: Runtime[RouterContext], config: RunnableConfig) -> dict:
        context = run_context(runtime)
        task_map = pool.task_map
        task = read(state, "task_decision")
        candidates = []
        if context.expert is not None:
            route = pinned_route(task_map, task.task, context.expert)
        elif review_unknown and task.task == UNKNOWN_TASK and context.task is None:
            return dict(LEFT_TO_REVIEW)
        elif query_router is not None:
            try:
                route, candidates = query_level_route(query_router, pool, task.task, state["query"],
                                                      context.cost_weight, prices or {})
            except ValueError as exc:
                raise InvalidContextError(f"context.{exc}") from None
        elif context.cost_weight is not None:
            try:
                route, candidates = task_map.cost_aware_route(task.task, prices or {}, context.cost_weight)
            except ValueError as exc:
                raise InvalidContextError(f"context.{exc}") from None
        else:
            route = task_map.route(task.task)
        return route_update(task_map, state, task, route, candidates, context, fanout, config)

    return router
