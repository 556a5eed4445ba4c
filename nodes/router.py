"""Router node: task -> expert through the task map (CoE-Ops eq. 3, 5); "unknown" -> the best-average expert (eq. 8).

The map holds a ranked list per task (best first); the rest of the list, then every other expert in best-average
order, is the fallback chain the expert node walks when an expert fails.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from langgraph.types import interrupt
from pydantic import BaseModel

from coe_router.config import UNKNOWN_TASK
from coe_router.graphs.state import RouterState
from coe_router.schema import Route, RoutingDecision, TaskDecision


class TaskMap(BaseModel):
    """Ranked experts per task plus the best-average expert; `version` identifies the map in traces and results."""

    ranking: dict[str, list[str]]
    default_expert: str

    @property
    def version(self) -> str:
        payload = json.dumps({"ranking": self.ranking, "default": self.default_expert}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]

    def experts(self) -> list[str]:
        """Every expert the map can route to, the default first."""
        seen = [self.default_expert]
        for ranked in self.ranking.values():
            seen += [e for e in ranked if e not in seen]
        return seen

    def route(self, task: str) -> Route:
        if task in self.ranking:
            ranked, reason = self.ranking[task], f"task map: {task}"
        elif task == UNKNOWN_TASK:
            ranked, reason = [self.default_expert], "unknown task: best-average expert"
        else:
            ranked, reason = [self.default_expert], f"task {task!r} has no entry: best-average expert"
        chain = ranked + [e for e in self.experts() if e not in ranked]
        return Route(expert=chain[0], fallbacks=chain[1:], reason=reason)


def _human_review(task_map: TaskMap, state: RouterState, task: TaskDecision) -> tuple[TaskDecision, Route]:
    """Pause the run (LangGraph interrupt) until a person picks a task or an expert; resume with
    `Command(resume={"task": ...})` or `Command(resume={"expert": ...})` on the same thread id."""
    choice = interrupt({
        "reason": "the classifier could not place this query",
        "query": state["query"],
        "tasks": sorted(task_map.ranking),
        "experts": task_map.experts(),
    })
    if isinstance(choice, dict) and choice.get("expert") in task_map.experts():
        expert = choice["expert"]
        others = [e for e in task_map.experts() if e != expert]
        return task.model_copy(update={"source": f"{task.source}+review"}), Route(
            expert=expert, fallbacks=others, reason="human review: expert")
    if isinstance(choice, dict) and choice.get("task") in task_map.ranking:
        reviewed = TaskDecision(task=choice["task"], confidence=1.0, source=f"{task.source}+review")
        return reviewed, task_map.route(reviewed.task).model_copy(update={"reason": "human review: task"})
    raise ValueError(f"review answer must be {{'task': one of {sorted(task_map.ranking)}}} or "
                     f"{{'expert': one of {task_map.experts()}}}, got {choice!r}")


def make_router_node(task_map: TaskMap, review_unknown: bool = False) -> Callable[[RouterState], dict]:
    def router(state: RouterState) -> dict:
        task = state["task_decision"]
        if review_unknown and task.task == UNKNOWN_TASK:
            task, route = _human_review(task_map, state, task)
        else:
            route = task_map.route(task.task)
        decision = RoutingDecision(
            task=task.task,
            confidence=task.confidence,
            classifier=task.source,
            retrieved=state.get("retrieved", []),
            expert=route.expert,
            fallbacks=route.fallbacks,
            task_map_version=task_map.version,
        )
        return {"route": route, "decision": decision}

    return router
