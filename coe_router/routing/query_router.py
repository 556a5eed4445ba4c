"""The query-level router: one implementation for the live graph and for replayed evaluation.

The query's nearest labelled questions vote with their recorded outcomes: each expert's similarity-weighted
score on the neighbourhood, shrunk by a pseudo-count towards a prior (the task prior is the two-stage router's
belief: the neighbours' task posterior times the per-task accuracy), minus an optional cost term
(`cost_weight` x price / dearest price). With a huge pseudo-count it becomes the soft two-stage router; with none
it is a plain kNN router ("simple kNN beats learned routers"). Scores may be graded (any value in [0, 1]).
"""

from __future__ import annotations

import threading
from typing import Literal, NamedTuple, Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.retrieval.memory_index import EXACT_MAX_ROWS, MemoryIndex

Weighting = Literal["uniform", "similarity", "softmax"]
Prior = Literal["none", "global", "task"]


def preference_order(mean_scores: np.ndarray, prices: np.ndarray | None) -> np.ndarray:
    """Model indices from most to least preferred when utilities tie: better train average, then cheaper."""
    price = prices if prices is not None else np.zeros_like(mean_scores)
    return np.lexsort((np.arange(len(mean_scores)), price, -np.round(mean_scores, 12)))


def argmax_with_ties(utility: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Row-wise argmax; exact ties (to 1e-9) go to the model earliest in `order`."""
    permuted = np.round(utility[:, order], 9)
    return order[np.argmax(permuted, axis=1)]


def ranked_with_ties(utility: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Model indices best first by one query's `utility`, exact ties (to 1e-9) in `order`: `argmax_with_ties`'
    rule for every place, so the first is the model it picks."""
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    return np.lexsort((place, -np.round(utility, 9)))


def price_vector(models: Sequence[str], prices: dict[str, float] | None) -> np.ndarray | None:
    """Prices in model order, or None when no price is known; a partial price list is an error (a missing price
    would make that model look free)."""
    if not prices:
        return None
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"no price for model(s) {missing}")
    return np.array([float(prices[m]) for m in models])


class Memory(NamedTuple):
    """The router's labelled questions: their vectors, each model's score (NaN: not recorded), and what the
    estimates derive from them. Swapped whole when an outcome is added, so a reader never sees a mix."""

    vectors: np.ndarray
    scores: np.ndarray
    filled: np.ndarray  # scores with 0 for missing cells
    known: np.ndarray  # 1 where a score is recorded
    task_ids: np.ndarray
    task_accuracy: np.ndarray
    global_accuracy: np.ndarray
    tasks: list[str]
    index: MemoryIndex  # nearest rows of `vectors`: exact below a size, HNSW above


class KnnRouterParams(BaseModel):
    """Settings of the knn-router; `tune_knn_router` picks them by cross-validation on the training split.

    These defaults are the only ones: a config's `router.knn` and `coe eval replay` both start from them, so a
    config that writes no settings deploys the router that replay evaluated (`coe eval replay --write-config`
    writes tuned ones)."""

    k: int = Field(100, gt=0, description="neighbours whose outcomes estimate each model's local accuracy")
    weighting: Weighting = Field("similarity", description="neighbour weight: 1, cosine, or exp(cos / temperature)")
    temperature: float = Field(0.05, gt=0)
    prior: Prior = Field("task", description="what the local estimate is shrunk towards")
    prior_strength: float = Field(20.0, ge=0, description="pseudo-count of the prior, in neighbour-weight units")
    task_k: int = Field(5, gt=0, description="neighbours whose task labels give P(task | query) for the task prior "
                                             "(the two-stage classifier's k)")
    cost_weight: float = Field(0.0, ge=0, description="lambda: utility = score - lambda * price / max price")


def neighbour_weights(sims: np.ndarray, weighting: Weighting, temperature: float) -> np.ndarray:
    if weighting == "uniform":
        return np.ones_like(sims)
    if weighting == "similarity":
        return np.maximum(sims, 0.0)
    if weighting == "softmax":
        return np.exp((sims - sims[:, :1]) / temperature)
    raise ValueError(f"unknown weighting {weighting!r} (uniform, similarity, softmax)")


class KnnRouter:
    """Query-level router over a memory of labelled training questions with recorded outcomes (see module doc)."""

    name = "knn-router"

    def __init__(self, models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str],
                 params: KnnRouterParams | None = None, prices: dict[str, float] | None = None, *,
                 exact_max_rows: int = EXACT_MAX_ROWS):
        """`scores` may hold NaN where a model has no outcome for a question (served feedback records one expert
        at a time); each model's estimate then uses only the neighbours it has outcomes for. Memories above
        `exact_max_rows` rows are searched with an HNSW graph (coe_router.retrieval.memory_index)."""
        self.models = list(models)
        self.exact_max_rows = exact_max_rows
        self.memory: Memory | None = None
        self.params = params or KnnRouterParams()
        self.task_names = sorted(set(map(str, tasks)))
        self._lock = threading.Lock()
        self._set_memory(np.asarray(vectors, dtype=np.float32), np.asarray(scores, dtype=float), list(map(str, tasks)))
        self.prices = price_vector(self.models, prices)
        self.order = preference_order(self.global_accuracy, self.prices)
        if self.params.cost_weight > 0 and self.prices is None:
            raise ValueError("cost_weight > 0 needs prices for every model")

    def _set_memory(self, vectors: np.ndarray, scores: np.ndarray, tasks: list[str]) -> None:
        """Swap in a new memory; readers see the old or the new one whole (rows are only ever appended)."""
        for task in tasks:
            if task not in self.task_names:
                self.task_names.append(task)
        task_index = {t: i for i, t in enumerate(self.task_names)}
        task_ids = np.array([task_index[t] for t in tasks], dtype=int)
        known = ~np.isnan(scores)
        if not known.any(axis=0).all():
            raise ValueError("knn-router memory has a model with no outcome at all")
        global_accuracy = np.nanmean(scores, axis=0)
        task_accuracy = np.array([_column_means(scores[task_ids == i], global_accuracy)
                                  for i in range(len(self.task_names))])
        old = self.memory
        index = (old.index.extended(vectors) if old is not None and len(old.vectors) <= len(vectors)
                 else MemoryIndex(vectors, exact_max_rows=self.exact_max_rows))
        self.memory = Memory(vectors, scores, np.nan_to_num(scores), known.astype(float), task_ids, task_accuracy,
                             global_accuracy, tasks, index)

    @property
    def vectors(self) -> np.ndarray:
        return self.memory.vectors

    @property
    def scores(self) -> np.ndarray:
        return self.memory.scores

    @property
    def global_accuracy(self) -> np.ndarray:
        return self.memory.global_accuracy

    def add_outcome(self, vector: np.ndarray, model: str, score: float, task: str) -> int:
        """Remember one recorded outcome (e.g. feedback on a served answer): the next query near it sees it.
        Returns its row, for `replace_outcome`."""
        with self._lock:
            vectors, scores, tasks = self.memory.vectors, self.memory.scores, self.memory.tasks
            row = np.full((1, len(self.models)), np.nan)
            row[0, self.models.index(model)] = score
            self._set_memory(np.vstack([vectors, np.asarray(vector, dtype=np.float32)[None, :]]),
                             np.vstack([scores, row]), [*tasks, task])
            return len(tasks)

    def replace_outcome(self, row: int, model: str, score: float) -> None:
        """A new score for an outcome `add_outcome` recorded (a repeated feedback on the same answer)."""
        with self._lock:
            scores = self.memory.scores.copy()
            scores[row, self.models.index(model)] = score
            self._set_memory(self.memory.vectors, scores, self.memory.tasks)

    def expected_scores(self, idx: np.ndarray, sims: np.ndarray, params: KnnRouterParams | None = None,
                        tasks: Sequence[str] | None = None) -> np.ndarray:
        """(n, models) estimated score of each model for each query, from precomputed neighbours (best first).
        `tasks`: each query's task when it is known (a labelled benchmark, a classifier's decision); the task
        prior is then that task's accuracy instead of the neighbours' task vote (an unseen task: the global one)."""
        p = params or self.params
        memory = self.memory
        filled, known, task_accuracy, global_accuracy = memory.filled, memory.known, memory.task_accuracy, \
            memory.global_accuracy
        k = min(p.k, idx.shape[1])
        weights = neighbour_weights(sims[:, :k], p.weighting, p.temperature)
        local = np.einsum("nk,nkm->nm", weights, filled[idx[:, :k]])
        mass = np.einsum("nk,nkm->nm", weights, known[idx[:, :k]])
        if p.prior == "none" or p.prior_strength == 0:
            return np.where(mass > 0, local / np.maximum(mass, 1e-12), global_accuracy)
        if p.prior == "global":
            prior = np.broadcast_to(global_accuracy, local.shape)
        elif tasks is not None:
            prior = self.given_task_prior(tasks)
        else:
            prior = self.task_posterior(idx, sims, p.task_k) @ task_accuracy
        return (local + p.prior_strength * prior) / (mass + p.prior_strength)

    def given_task_prior(self, tasks: Sequence[str]) -> np.ndarray:
        """(n, models) each query's known task's accuracy per model; the global accuracy for tasks not in memory."""
        memory = self.memory
        index = {t: i for i, t in enumerate(self.task_names)}
        rows = np.array([index.get(t, -1) for t in map(str, tasks)], dtype=int)
        in_memory = np.bincount(memory.task_ids, minlength=len(self.task_names)) > 0
        known = (rows >= 0) & in_memory[np.maximum(rows, 0)]
        return np.where(known[:, None], memory.task_accuracy[np.maximum(rows, 0)], memory.global_accuracy)

    def task_posterior(self, idx: np.ndarray, sims: np.ndarray, task_k: int) -> np.ndarray:
        """P(task | query): the similarity-weighted label vote of the nearest `task_k` (the knn classifier's vote)."""
        k = min(task_k, idx.shape[1])
        n, tasks = idx.shape[0], len(self.task_names)
        weights = np.maximum(sims[:, :k], 0.0) + 1e-12
        cells = (np.arange(n)[:, None] * tasks + self.memory.task_ids[idx[:, :k]]).ravel()  # (query, task) cells
        votes = np.bincount(cells, weights.ravel(), minlength=n * tasks).reshape(n, tasks)
        return votes / votes.sum(axis=1, keepdims=True)

    def utilities(self, expected: np.ndarray, cost_weight: float | None = None) -> np.ndarray:
        """Expected score minus `cost_weight` x price / dearest price (the config's weight when None)."""
        weight = self.params.cost_weight if cost_weight is None else cost_weight
        if weight <= 0:
            return expected
        if self.prices is None:
            raise ValueError("cost_weight: the query-level router needs a price for every expert it routes "
                             "(models.<name>.price_per_1m_tokens)")
        return expected - weight * (self.prices / self.prices.max())

    def choose(self, expected: np.ndarray, cost_weight: float | None = None) -> np.ndarray:
        return argmax_with_ties(self.utilities(expected, cost_weight), self.order)

    def neighbours(self, vectors: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.memory.index.search(np.asarray(vectors, dtype=np.float32),
                                        max(self.params.k, self.params.task_k), exclude=exclude)

    def route(self, vectors: np.ndarray) -> np.ndarray:
        idx, sims = self.neighbours(vectors)
        return self.choose(self.expected_scores(idx, sims))

    def route_vector(self, vector: np.ndarray) -> "KnnChoice":
        """One query (e.g. from the graph): the model, every model's utility, and the nearest training rows."""
        idx, sims = self.neighbours(np.asarray(vector, dtype=np.float32)[None, :])
        expected = self.expected_scores(idx, sims)
        choice = int(self.choose(expected)[0])
        return KnnChoice(
            model=self.models[choice],
            expected={m: round(float(v), 4) for m, v in zip(self.models, expected[0])},
            neighbours=idx[0, : self.params.k].tolist(),
            similarities=[round(float(s), 4) for s in sims[0, : self.params.k]],
        )


def _column_means(scores: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Mean of each column over its known cells; `fallback` where a column has none."""
    known = ~np.isnan(scores)
    sums, counts = np.nansum(scores, axis=0), known.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


class KnnChoice(BaseModel):
    """One query's routing: the model, every model's estimated score, and the memory rows that voted."""

    model: str
    expected: dict[str, float]
    neighbours: list[int]
    similarities: list[float]


class LiveQueryRouter:
    """The query-level router in the live graph: the query's vector in, a ranked route and every candidate's
    expected score and price out. Experts with no recorded outcomes follow the scored ones in the fallback chain.

    The estimate is the knn router's neighbourhood vote, or a `scorer`'s (`router.kind: mf` / `learned`: the
    matrix factorisation or the learned router, trained on the same memory at start, fed the classified task); the
    memory, the tie order, the prices and
    the cost weight are the knn router's either way, so both kinds rank and trade off cost alike."""

    def __init__(self, knn: KnnRouter, encoder, prices: dict[str, float] | None = None, scorer=None):
        self.knn, self.encoder, self.scorer = knn, encoder, scorer
        self.prices = prices or {}

    @property
    def experts(self) -> list[str]:
        return self.knn.models

    @property
    def reason(self) -> str:
        how = {"mf-router": "matrix factorisation", "learned-router": "knn shrunk to the task + success predictor"}
        return f"query-level router ({how.get(getattr(self.scorer, 'name', ''), 'knn')} on recorded outcomes)"

    def rank(self, query: str, cost_weight: float | None = None,
             task: str | None = None) -> tuple[list[str], dict[str, float]]:
        """Experts best first and each one's expected score (the same estimate replay evaluates)."""
        vector = np.asarray(self.encoder.encode([query]), dtype=np.float32)[0]
        if self.scorer is not None:
            expected = self.scorer.expected_scores(vector[None, :], [task or ""])
        else:
            idx, sims = self.knn.neighbours(vector[None, :])
            expected = self.knn.expected_scores(idx, sims)
        models = self.knn.models
        ranked = ranked_with_ties(self.knn.utilities(expected, cost_weight)[0], self.knn.order)
        return [models[i] for i in ranked.tolist()], {m: round(v, 4) for m, v in zip(models, expected[0].tolist())}

    def record(self, query: str, expert: str, score: float, task: str, replaces: int | None = None) -> int | None:
        """A served answer's outcome joins the memory: the next query near this one weighs it. `replaces`: the
        row of an earlier score on the same answer, which this one replaces. Returns the outcome's row."""
        if expert not in self.knn.models:
            return None
        if replaces is not None:
            self.knn.replace_outcome(replaces, expert, score)
            return replaces
        vector = np.asarray(self.encoder.encode([query]), dtype=np.float32)[0]
        return self.knn.add_outcome(vector, expert, score, task)
