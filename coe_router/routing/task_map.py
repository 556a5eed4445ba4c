"""The task -> ranked experts map (CoE-Ops eq. 3 and 5) with the best-average expert for "unknown" (eq. 8)."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, Field

from coe_router.config import UNKNOWN_TASK, RouterConfig, TaskMapFile, load_task_map_file
from coe_router.schema import Candidate, Route


class TaskMap(BaseModel):
    """Ranked experts per task plus the best-average expert; `version` identifies the map in traces and results.

    `accuracy` (task -> expert -> leaderboard accuracy, `unknown` over all tasks) is there when the map was read
    from a leaderboard; a cost-aware route needs it.
    """

    ranking: dict[str, list[str]]
    default_expert: str
    accuracy: dict[str, dict[str, float]] = Field(default_factory=dict)
    counts: dict[str, dict[str, int]] = Field(default_factory=dict, description="outcomes behind each accuracy")

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

    def cost_aware_route(self, task: str, prices: dict[str, float], weight: float) -> tuple[Route, list[Candidate]]:
        """The route's experts re-ranked by accuracy - weight x price / (dearest price): weight 0 keeps the most
        accurate first, a larger weight buys cheaper experts with accuracy. Experts without a recorded accuracy for
        the task keep their order after the scored ones. Raises ValueError when there is nothing to trade."""
        chain = self.route(task)
        experts = [chain.expert, *chain.fallbacks]
        scores = self.accuracy.get(task) or self.accuracy.get(UNKNOWN_TASK) or {}
        if not scores:
            raise ValueError(f"cost_weight: no leaderboard accuracy for task {task!r} (use `task_map: {{from: "
                             "leaderboard.json}}`, built by `coe leaderboard build`)")
        if not any(prices.get(e) for e in experts):
            raise ValueError("cost_weight: no expert on this route has a price (models.<name>.price_per_1m_tokens)")
        dearest = max(prices.get(e) or 0.0 for e in experts)
        candidates = [Candidate(expert=e, expected_score=scores.get(e), price=prices.get(e)) for e in experts]
        scored = sorted((c for c in candidates if c.expected_score is not None),
                        key=lambda c: -(c.expected_score - weight * (c.price or 0.0) / dearest))
        ordered = [c.expert for c in scored] + [c.expert for c in candidates if c.expected_score is None]
        reason = f"{chain.reason}; cost-aware (weight {weight:g})"
        return Route(expert=ordered[0], fallbacks=ordered[1:], reason=reason), candidates


    def with_outcome(self, task: str, expert: str, score: float, replaces: float | None = None) -> "TaskMap":
        """The map after one more recorded outcome (served feedback): the expert's accuracy on the task moves by
        one observation, and a task whose experts all have accuracies is ranked again by them. `replaces`: an
        earlier score of the same answer, which this one replaces (the count stays)."""
        accuracy = {t: dict(s) for t, s in self.accuracy.items()}
        counts = {t: dict(c) for t, c in self.counts.items()}
        seen = counts.setdefault(task, {}).get(expert, 0)
        old = accuracy.setdefault(task, {}).get(expert)
        if replaces is not None and old is not None and seen:
            accuracy[task][expert] = old + (score - replaces) / seen
        else:
            accuracy[task][expert] = score if old is None else (old * seen + score) / (seen + 1)
            counts[task][expert] = seen + 1
        ranking = {t: list(r) for t, r in self.ranking.items()}
        ranked = ranking.get(task)
        if ranked and all(e in accuracy[task] for e in ranked):
            ranking[task] = sorted(ranked, key=lambda e: (-accuracy[task][e], ranked.index(e)))
        return self.model_copy(update={"ranking": ranking, "accuracy": accuracy, "counts": counts})


def task_map_from_config(config: RouterConfig) -> TaskMap:
    """The ranked task map and best-average expert: the config's own lists, or those of a leaderboard file.

    The best-average expert (CoE-Ops eq. 8) is `default_expert` if set, else the `unknown` entry of the map, else
    the leaderboard's overall best, else the first expert.
    """
    accuracy: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    if isinstance(config.task_map, TaskMapFile):
        ranking, overall_best, accuracy, counts = load_task_map_file(config, config.task_map)
    else:
        ranking, overall_best = dict(config.task_map), None
    unknown = ranking.pop(UNKNOWN_TASK, None)
    default = config.default_expert or (unknown[0] if unknown else None) or overall_best or next(iter(config.experts))
    return TaskMap(ranking=ranking, default_expert=default, accuracy=accuracy, counts=counts)


def expert_prices(config: RouterConfig) -> dict[str, float]:
    """Each expert's price per 1M tokens (its model's), for the experts whose model has one; a model priced by
    input and output separately routes by their mean."""
    prices = {}
    for name, expert in config.experts.items():
        spec = config.models[expert.model]
        price = spec.price_per_1m_tokens
        if price is None and spec.input_price_per_1m_tokens is not None and spec.output_price_per_1m_tokens is not None:
            price = (spec.input_price_per_1m_tokens + spec.output_price_per_1m_tokens) / 2
        if price is not None:
            prices[name] = price
    return prices
