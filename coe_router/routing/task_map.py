"""The task -> ranked experts map (CoE-Ops eq. 3 and 5) with the best-average expert for "unknown" (eq. 8)."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

from coe_router.config import UNKNOWN_TASK, RouterConfig, TaskMapFile, load_task_map_file
from coe_router.schema import Route


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


def task_map_from_config(config: RouterConfig) -> TaskMap:
    """The ranked task map and best-average expert: the config's own lists, or those of a leaderboard file.

    The best-average expert (CoE-Ops eq. 8) is `default_expert` if set, else the `unknown` entry of the map, else
    the leaderboard's overall best, else the first expert.
    """
    if isinstance(config.task_map, TaskMapFile):
        ranking, overall_best = load_task_map_file(config, config.task_map)
    else:
        ranking, overall_best = dict(config.task_map), None
    unknown = ranking.pop(UNKNOWN_TASK, None)
    default = config.default_expert or (unknown[0] if unknown else None) or overall_best or next(iter(config.experts))
    return TaskMap(ranking=ranking, default_expert=default)
