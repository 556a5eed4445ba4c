"""One model pool on one split: settings tuned on train alone, then every router scored once on test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from coe_router.evaluation.embedding_cache import encode_cached
from coe_router.evaluation.leaderboard import Leaderboard
from coe_router.outcomes import Outcomes
from coe_router.evaluation.replay import (BASELINES, EXTRA_ROUTERS, ROUTERS, ClassifierReport, ReplayBench, ReplayResult,
                                          prepare_pool)
from coe_router.evaluation.tuning import CvScore, best_classifier_k, default_grid, tune_classifier_k, tune_knn_router
from coe_router.routing.query_router import KnnRouterParams

TEST_FRACTION = 0.3
PRIMARY_SEED = 0
REPORT_ROUTERS = ROUTERS + EXTRA_ROUTERS
REPORT_BASELINES = BASELINES + ("knn-router",)
"""Every router, the learned ones included, each against best single, the task map and the knn-router."""


class PoolReport(BaseModel):
    """Everything measured for one model pool on one split (`bench`: the tuned ReplayBench, for further sweeps)."""

    name: str
    models: list[str]
    n_train: int
    n_test: int
    results: list[ReplayResult]
    classifier: ClassifierReport
    classifier_k: int
    classifier_loo: dict[int, float]
    knn: KnnRouterParams
    knn_cv: float
    knn_top: list[CvScore]
    leaderboard: Leaderboard
    bench: Any = Field(None, exclude=True)

    def result(self, router: str) -> ReplayResult:
        return next(r for r in self.results if r.router == router)


def evaluate_pool(name: str, train: Outcomes, test: Outcomes, train_vectors: np.ndarray, test_vectors: np.ndarray,
                  models: Sequence[str] | None = None, prices: dict[str, float] | None = None) -> PoolReport:
    """Tune on train (classifier k by leave-one-out, knn-router and the learned routers' settings by 5-fold CV),
    then score every router on test."""
    train, test, train_rows, test_rows = prepare_pool(train, test, models, "drop")
    train_vectors, test_vectors = train_vectors[train_rows], test_vectors[test_rows]
    loo = tune_classifier_k(train_vectors, train.categories)
    k = best_classifier_k(loo)
    tuning = tune_knn_router(train.models, train_vectors, train.scores, train.categories.tolist(),
                             grid=default_grid(task_k=k), prices=prices, progress=True)
    bench = ReplayBench(train, test, train_vectors, test_vectors, prices=prices, classifier_k=k, knn_params=tuning.best)
    return PoolReport(
        name=name, models=train.models, n_train=train.n, n_test=test.n, results=bench.run_all(REPORT_ROUTERS, REPORT_BASELINES),
        classifier=bench.classifier_report, classifier_k=k, classifier_loo=loo, knn=tuning.best,
        knn_cv=tuning.best_accuracy, knn_top=tuning.table[:5], leaderboard=bench.leaderboard, bench=bench,
    )


def encode(texts: list[str], encoder, cache_dir, desc: str) -> np.ndarray:
    """Question embeddings through the on-disk cache (keyed by text hash)."""
    return encode_cached(texts, encoder, cache_dir=cache_dir, desc=desc)
