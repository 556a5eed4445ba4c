"""The live expert pool: experts, their chat models and the task map, editable while the graph serves requests.

CCoE's push and pop of experts: add, replace or remove an expert and remap tasks without rebuilding the graph or
restarting the process. The router and expert nodes read the pool at call time; each edit swaps in a new TaskMap
under a lock, so a request sees either the old map or the new one, never half of an edit.
"""

from __future__ import annotations

import threading
from typing import Iterable

from langchain_core.language_models import BaseChatModel

from coe_router.config import ExpertSpec
from coe_router.routing.breaker import Breakers
from coe_router.routing.task_map import TaskMap
from coe_router.routing.time_budget import AttemptPolicy


class UnknownExpertError(KeyError):
    """An expert that is not (or no longer) in the pool."""

    def __str__(self) -> str:
        return str(self.args[0])


class ExpertPool:
    def __init__(self, experts: dict[str, ExpertSpec], models: dict[str, BaseChatModel], task_map: TaskMap, *,
                 policies: dict[str, AttemptPolicy] | None = None, breakers: Breakers | None = None):
        """`policies`: each model's time budget and retries (default AttemptPolicy()); `breakers`: the circuit
        breakers of the models, kept for the life of the pool."""
        self._lock = threading.RLock()
        self._experts = {name: (spec, models[spec.model]) for name, spec in experts.items()}
        self._task_map = task_map
        self._policies = dict(policies or {})
        self.breakers = breakers or Breakers()

    def policy(self, model: str) -> AttemptPolicy:
        return self._policies.get(model, AttemptPolicy())

    @property
    def task_map(self) -> TaskMap:
        return self._task_map

    def names(self) -> list[str]:
        return list(self._experts)

    def expert(self, name: str) -> tuple[ExpertSpec, BaseChatModel]:
        try:
            return self._experts[name]
        except KeyError:
            raise UnknownExpertError(f"expert {name!r} is not in the pool (removed?)") from None

    def add(self, name: str, spec: ExpertSpec, model: BaseChatModel, tasks: Iterable[str] = (),
            rank: int = 0, replace: bool = False) -> None:
        """Push an expert; with `tasks` it is placed at `rank` (0 = best) in those tasks' ranked lists."""
        with self._lock:
            if name in self._experts and not replace:
                raise ValueError(f"expert {name!r} already exists (pass replace=True to update it)")
            self._experts[name] = (spec, model)
            ranking = {task: list(ranked) for task, ranked in self._task_map.ranking.items()}
            for task in tasks:
                ranked = [e for e in ranking.get(task, []) if e != name]
                ranked.insert(min(rank, len(ranked)), name)
                ranking[task] = ranked
            self._task_map = self._task_map.model_copy(update={"ranking": ranking})

    def remove(self, name: str) -> None:
        """Pop an expert: it leaves every ranked list; if it was the best-average expert, the next one takes over."""
        with self._lock:
            if name not in self._experts:
                raise UnknownExpertError(f"expert {name!r} is not in the pool")
            if len(self._experts) == 1:
                raise ValueError("cannot remove the last expert")
            del self._experts[name]
            ranking = {task: [e for e in ranked if e != name] for task, ranked in self._task_map.ranking.items()}
            ranking = {task: ranked for task, ranked in ranking.items() if ranked}
            default = self._task_map.default_expert
            if default == name:
                default = next(e for e in self._task_map.experts() if e in self._experts)
            self._task_map = self._task_map.model_copy(update={"ranking": ranking, "default_expert": default})

    def remap(self, task: str, ranked: list[str]) -> None:
        """Give a task a new ranked expert list (an empty list sends it to the best-average expert)."""
        with self._lock:
            missing = [e for e in ranked if e not in self._experts]
            if missing:
                raise UnknownExpertError(f"cannot map {task!r} to unknown experts {missing}")
            ranking = {**self._task_map.ranking, task: list(ranked)}
            if not ranked:
                ranking.pop(task)
            self._task_map = self._task_map.model_copy(update={"ranking": ranking})

    def record_outcome(self, task: str, expert: str, score: float, replaces: float | None = None) -> None:
        """One more recorded outcome of `expert` on `task` (served feedback), or a new score for an earlier one
        (`replaces`); the task map uses it at once."""
        with self._lock:
            if expert not in self._experts:
                raise UnknownExpertError(f"expert {expert!r} is not in the pool")
            self._task_map = self._task_map.with_outcome(task, expert, score, replaces)
