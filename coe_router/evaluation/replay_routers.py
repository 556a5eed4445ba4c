"""Routers evaluated on recorded outcomes: the trivial baselines and the two real ones.

- random, best-single, oracle: the yardsticks every routing result is read against (the oracle is the ceiling:
  per question, any model that got it right);
- task-map (CoE-Ops): task -> best expert of the training leaderboard; fed the gold task it is the "category"
  router (a perfect classifier), fed a classifier's prediction it is the "two-stage" router;
- knn-router: coe_router.routing.query_router.KnnRouter, the same code the live graph routes with.

Routers return model indices into their `models` list for a batch; they never see the test outcomes (the oracle
takes them explicitly, which is what makes it an oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from coe_router.evaluation.leaderboard import Leaderboard
from coe_router.routing.query_router import argmax_with_ties, preference_order, price_vector


@dataclass
class RandomRouter:
    """Uniformly random model per question (seeded)."""

    models: list[str]
    seed: int = 0
    name: str = "random"

    def route(self, n: int) -> np.ndarray:
        return np.random.default_rng(self.seed).integers(len(self.models), size=n)


@dataclass
class BestSingleRouter:
    """Always the model with the best training average (eq. 8 over the training questions)."""

    models: list[str]
    choice: int
    name: str = "best-single"

    @classmethod
    def fit(cls, models: list[str], train_scores: np.ndarray, prices: dict[str, float] | None = None) -> "BestSingleRouter":
        order = preference_order(train_scores.mean(axis=0), price_vector(models, prices))
        return cls(models=models, choice=int(order[0]))

    def route(self, n: int) -> np.ndarray:
        return np.full(n, self.choice)


@dataclass
class TaskMapRouter:
    """Task -> best expert of a leaderboard (eq. 5); unseen or "unknown" tasks -> best-average expert (eq. 8)."""

    models: list[str]
    leaderboard: Leaderboard
    name: str = "task-map"

    def route(self, tasks: Sequence[str]) -> np.ndarray:
        index = {m: i for i, m in enumerate(self.models)}
        return np.array([index[self.leaderboard.best_expert(str(t))] for t in tasks], dtype=int)


def oracle_route(test_scores: np.ndarray, prices: np.ndarray | None = None,
                 train_means: np.ndarray | None = None) -> np.ndarray:
    """Per question the best recorded score; among models tied at the top the cheapest, then the better one on
    train (so the oracle's picks read as "who would have been needed", not as column order)."""
    means = train_means if train_means is not None else np.zeros(test_scores.shape[1])
    order = np.lexsort((np.arange(len(means)), -np.round(means, 12),
                        prices if prices is not None else np.zeros_like(means)))
    return argmax_with_ties(test_scores, order)
