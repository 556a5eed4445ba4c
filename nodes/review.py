"""Review node: a query the classifier could not place waits for a person to pick its task or expert
(`persistence.review_unknown`), then is routed like any other.

Its own node, after the router step, so that resuming the paused run re-runs only the review: the intake,
retriever and classifier decided before the pause and are not asked again.
"""

from __future__ import annotations

from typing import Callable

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from coe_router.graphs.context import RouterContext, run_context
from coe_router.graphs.state import RouterState, read
from coe_router.nodes.router import LEFT_TO_REVIEW, route_update
from coe_router.routing.pool import ExpertPool
from coe_router.routing.task_map import TaskMap
from coe_router.schema import Route, TaskDecision


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


def human_review(task_map: TaskMap, state: RouterState, task: TaskDecision) -> tuple[TaskDecision, Route]:
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


def _paused_in_router(state) -> bool:
    """A thread paused by a router that reviewed inside its own step, as checkpoints written before the review
    node existed are: resumed as it is, the whole router step would run again and the answer be lost."""
    return tuple(state.next) == ("router",) and any(task.interrupts for task in state.tasks)


def move_pause_to_review(graph, config: RunnableConfig, state=None) -> None:
    """Before resuming a thread: hand an old router pause to the review node (its answer is then taken there).
    `state`: the thread's state when the caller has already read it."""
    if _paused_in_router(state if state is not None else graph.get_state(config)):
        graph.update_state(config, LEFT_TO_REVIEW, as_node="router")


async def amove_pause_to_review(graph, config: RunnableConfig, state=None) -> None:
    if _paused_in_router(state if state is not None else await graph.aget_state(config)):
        await graph.aupdate_state(config, LEFT_TO_REVIEW, as_node="router")


def make_review_node(pool: ExpertPool, fanout: int = 1) -> Callable[..., dict]:
    """Pauses for the person's choice, then routes as the router would have with it."""

    def review(state: RouterState, runtime: Runtime[RouterContext], config: RunnableConfig) -> dict:
        context = run_context(runtime)
        task_map = pool.task_map
        task, route = human_review(task_map, state, read(state, "task_decision"))
        return route_update(task_map, state, task, route, [], context, fanout, config)

    return review
