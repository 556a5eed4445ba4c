"""Router node: task -> expert through the task map (CoE-Ops eq. 3, 5); "unknown" -> the best-average expert (eq. 8).

The map holds a ranked list per task (best first); the rest of the list, then every other expert in best-average
order, is the fallback chain the expert node walks when an expert fails.
"""

from __future__ import annotations

from typing import Callable

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from coe_router.defaults import UNKNOWN_TASK
from coe_router.graphs.context import InvalidContextError, RouterContext, run_context
from coe_router.graphs.state import RouterState, read
from coe_router.routing.pool import ExpertPool
from coe_router.routing.query_router import LiveQueryRouter
from coe_router.routing.task_map import TaskMap
from coe_router.schema import Candidate, Route, RoutingDecision, TaskDecision
from coe_router.tracing.annotations import annotate_router_run


def review_error(task_map: TaskMap, choice: object) -> str | None:
    """Why a review answer cannot be used (None when it can): it must name a task or an expert of the map, and
    whatever else it names must exist too (`{"task": "math", "expert": "ghost"}` is refused, not half-used)."""
    usage = (f"review answer must be {{'task': one of {sorted(task_map.ranking)}}} or "
             f"{{'expert': one of {task_map.experts()}}}, got {choice!r}")
    if not isinstance(choice, dict) or not ({"task", "expert"} & set(choice)):
        return usage
    if set(choice) - {"task", "expert"}:
        return f"review answer takes only 'task' and 'expert', got {sorted(set(choice) - {'task', 'expert'})}"
    if "expert" in choice and choice["expert"] not in task_map.experts():
        return f"no expert {choice['expert']!r}: {usage}"
    if "task" in choice and choice["task"] not in task_map.ranking:
        return f"no task {choice['task']!r}: {usage}"
    return None


def _human_review(task_map: TaskMap, state: RouterState, task: TaskDecision) -> tuple[TaskDecision, Route]:
    """Pause the run (LangGraph interrupt) until a person picks a task or an expert; resume with
    `Command(resume={"task": ...})` or `Command(resume={"expert": ...})` on the same thread id. A wrong answer
    pauses the run again (with the error in the request), so a typo never leaves the thread unusable."""
    request = {
        "reason": "the classifier could not place this query",
        "query": state["query"],
        "tasks": sorted(task_map.ranking),
        "experts": task_map.experts(),
    }
    choice = interrupt(request)
    while (problem := review_error(task_map, choice)) is not None:
        choice = interrupt({**request, "error": problem})
    if choice.get("expert") in task_map.experts():
        expert = choice["expert"]
        others = [e for e in task_map.experts() if e != expert]
        return task.model_copy(update={"source": f"{task.source}+review"}), Route(
            expert=expert, fallbacks=others, reason="human review: expert")
    reviewed = TaskDecision(task=choice["task"], confidence=1.0, source=f"{task.source}+review")
    return reviewed, task_map.route(reviewed.task).model_copy(update={"reason": "human review: task"})


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
    usual = pool.task_map.route(task)
    chain = [e for e in ranked if e in live]
    chain += [e for e in [usual.expert, *usual.fallbacks] if e not in chain]
    candidates = [Candidate(expert=e, expected_score=expected.get(e), price=prices.get(e)) for e in ranked if e in live]
    return Route(expert=chain[0], fallbacks=chain[1:], reason=query_router.reason), candidates


def make_router_node(pool: ExpertPool, review_unknown: bool = False, fanout: int = 1,
                     prices: dict[str, float] | None = None, query_router: LiveQueryRouter | None = None,
                     ) -> Callable[[RouterState, Runtime[RouterContext]], dict]:
    """Routes with the pool's current task map, so experts pushed or popped at run time take effect at once; with
    a `query_router` (config `router.kind: knn`), by each expert's expected score on the query's neighbourhood.

    The run context may pin an expert, set the fan-out, or weigh price against expected score or leaderboard
    accuracy (`cost_weight`, with `prices` per expert); the decision records what it overrode."""

    def router(state: RouterState, runtime: Runtime[RouterContext], config: RunnableConfig) -> dict:
        context = run_context(runtime)
        task_map = pool.task_map
        task = read(state, "task_decision")
        candidates = []
        if context.expert is not None:
            route = pinned_route(task_map, task.task, context.expert)
        elif review_unknown and task.task == UNKNOWN_TASK and context.task is None:
            task, route = _human_review(task_map, state, task)
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
            task_map_version=task_map.version,
            overrides=context.overrides(),
            candidates=candidates,
        )
        annotate_router_run(config, decision)
        return {"route": route, "decision": decision, "consultations": None}

    return router
