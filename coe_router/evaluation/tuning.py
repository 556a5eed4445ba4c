"""Choosing the knn-router's and the knn classifier's settings by cross-validation inside the training split.

The test split is never looked at: each fold's memory (neighbours, leaderboard, priors) is built from the other
folds, exactly as the final router is built from the whole training split. One neighbour search per fold at the
largest k serves every setting of the grid, so a grid of ~100 settings costs a few seconds.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
from pydantic import BaseModel

from coe_router.retrieval.neighbours import top_k
from coe_router.routing.query_router import KnnRouter, KnnRouterParams


class CvScore(BaseModel):
    params: KnnRouterParams
    accuracy: float
    fold_accuracy: list[float]


class KnnTuning(BaseModel):
    """The chosen settings and the whole table, so a report can show how flat (or not) the optimum is."""

    best: KnnRouterParams
    best_accuracy: float
    folds: int
    seed: int
    table: list[CvScore]


def default_grid(cost_weight: float = 0.0, task_k: int = 10) -> list[KnnRouterParams]:
    """k x weighting x prior x strength (126 settings); `none` ignores the strength, so it appears once per
    (k, weighting). `task_k` is the classifier's k, so the task prior is the two-stage classifier's own vote."""
    grid = []
    for k, weighting in itertools.product((10, 25, 50, 100, 200, 400), ("uniform", "similarity", "softmax")):
        grid.append(KnnRouterParams(k=k, weighting=weighting, prior="none", prior_strength=0, task_k=task_k,
                                    cost_weight=cost_weight))
        for prior, strength in itertools.product(("global", "task"), (5.0, 20.0, 50.0)):
            grid.append(KnnRouterParams(k=k, weighting=weighting, prior=prior, prior_strength=strength,
                                        task_k=task_k, cost_weight=cost_weight))
    return grid


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


def tune_knn_router(models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str], *,
                    grid: Sequence[KnnRouterParams] | None = None, folds: int = 5, seed: int = 0,
                    prices: dict[str, float] | None = None, progress: bool = False) -> KnnTuning:
    """Mean routed score (percent) of every grid setting over `folds` folds of the training data; best first.

    Ties in CV accuracy go to the simpler setting (earlier in the grid), so noise does not pick an exotic one.
    """
    from tqdm import tqdm

    grid = list(grid or default_grid())
    tasks = np.asarray(list(map(str, tasks)), dtype=object)
    assignment = fold_ids(len(tasks), folds, seed)
    max_k = max(max(p.k, p.task_k) for p in grid)
    per_fold = np.zeros((len(grid), folds))
    for fold in tqdm(range(folds), desc="tuning knn-router", disable=not progress, leave=False):
        fit, held = assignment != fold, assignment == fold
        router = KnnRouter(models, vectors[fit], scores[fit], tasks[fit].tolist(), grid[0], prices)
        idx, sims = top_k(vectors[held], router.vectors, max_k)
        held_scores = scores[held]
        for g, params in enumerate(grid):
            choice = router.choose(router.expected_scores(idx, sims, params), params.cost_weight)
            per_fold[g, fold] = held_scores[np.arange(len(choice)), choice].mean() * 100
    means = per_fold.mean(axis=1)
    order = sorted(range(len(grid)), key=lambda g: (-round(means[g], 9), g))
    table = [CvScore(params=grid[g], accuracy=round(float(means[g]), 3),
                     fold_accuracy=[round(float(v), 3) for v in per_fold[g]]) for g in order]
    return KnnTuning(best=grid[order[0]], best_accuracy=table[0].accuracy, folds=folds, seed=seed, table=table)


CLASSIFIER_K_GRID = (1, 3, 5, 10, 20, 50)
"""The k values `--k auto` (and the reports) try for the knn classifier."""


def best_classifier_k(loo: dict[int, float]) -> int:
    """Highest leave-one-out accuracy; ties to the smaller k."""
    return min(loo, key=lambda k: (-loo[k], k))


def tune_classifier_k(vectors: np.ndarray, tasks: Sequence[str], ks: Sequence[int] = CLASSIFIER_K_GRID) -> dict[int, float]:
    """Leave-one-out accuracy (percent) of the similarity-weighted knn vote on the training split, per k.

    Leave-one-out (each question hidden from its own neighbours) is exact here and costs one search. A k larger
    than the other questions available is skipped.
    """
    tasks = np.asarray(list(map(str, tasks)), dtype=object)
    ks = [k for k in ks if k < len(tasks)] or [1]
    idx, sims = top_k(vectors, vectors, max(ks), exclude=np.arange(len(tasks)))
    labels = sorted(set(tasks.tolist()))
    label_ids = np.array([labels.index(t) for t in tasks])
    result = {}
    for k in ks:
        votes = np.zeros((len(tasks), len(labels)))
        rows = np.repeat(np.arange(len(tasks)), k)
        np.add.at(votes, (rows, label_ids[idx[:, :k]].ravel()), np.maximum(sims[:, :k], 0).ravel() + 1e-12)
        result[k] = round(float((votes.argmax(axis=1) == label_ids).mean() * 100), 3)
    return result
