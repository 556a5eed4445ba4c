"""A learned query-level router: a per-expert success predictor on frozen query embeddings, stacked on the
knn-router's estimate and blended with it by a weight chosen by cross-validation on the training split.

The predictor is one small network (a hidden layer, or none: per-expert logistic regression) with a sigmoid
output per expert, trained on the recorded outcomes (graded scores are soft labels; missing cells are masked out).
Its inputs are the query's MiniLM vector and its task: the known task one-hot where the query comes with one (a
labelled benchmark, as the category router is fed; live, the classifier's decision), otherwise the task posterior
of its nearest labelled questions. It learns a correction in logit space on top of the knn-router's estimate and
starts at zero, so an untrained network is the knn-router. On the training rows the neighbours and the knn
estimate are computed with each question hidden from its own neighbours, as a new query sees them.

Where the task is known, the knn estimate is shrunk to that task's accuracy, with a pseudo-count chosen by CV:
a huge one is the task map (category router), none the plain neighbourhood vote. That choice is what makes the
router keep the task map where the task map is strong and the query-level gain where it is not (measured in
docs/RESULTS.md). The final estimate is `blend x learned + (1 - blend) x knn`; blend 0 is the shrunk knn
estimate, and a non-zero blend is kept only where it pays on held-out training folds by more than fold noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.routing.query_router import KnnRouter, KnnRouterParams

BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
TASK_PRIOR_STRENGTHS = (5.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e6)
"""Pseudo-counts of the known task's prior tried by CV: 1e6 routes as the task map, 5 nearly as the neighbours."""


class LearnedRouterParams(BaseModel):
    """The predictor's training settings, the blend weight and the known-task prior's strength
    (`tune_learned_router` picks the last two by CV on train)."""

    hidden: int = Field(128, ge=0, description="hidden units (0: per-expert logistic regression)")
    epochs: int = Field(10, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    blend: float = Field(0.5, ge=0, le=1, description="weight of the learned estimate against the knn-router's")
    task_prior_strength: float | None = Field(None, ge=0, description="pseudo-count of a known task's prior (None: "
                                                                      "the knn-router's prior_strength)")
    seed: int = 0


def train_on_outcomes(network, features: np.ndarray, scores: np.ndarray, offset: np.ndarray | None, *,
                      epochs: int, learning_rate: float, weight_decay: float, seed: int, batch: int = 256):
    """Fit `network` (features -> one logit per expert) to recorded outcomes with a masked binary cross-entropy:
    graded scores are soft labels, missing cells (NaN) do not count. `offset`: logits added before the loss (the
    estimate a residual network corrects). Returns the network in eval mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    base = torch.zeros(scores.shape) if offset is None else torch.as_tensor(offset, dtype=torch.float32)
    y = torch.as_tensor(np.nan_to_num(scores), dtype=torch.float32)
    mask = torch.as_tensor(~np.isnan(scores), dtype=torch.float32)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            loss = (loss_fn(network(x[rows]) + base[rows], y[rows]) * mask[rows]).sum() / mask[rows].sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return network.eval()


def predict_logits(network, features: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return network(torch.as_tensor(features, dtype=torch.float32)).numpy().astype(float)


def task_features(tasks: Sequence[str] | None, task_names: Sequence[str], posterior: np.ndarray) -> np.ndarray:
    """One-hot of each query's known task (all zero for a task the memory has never seen), or the neighbours'
    task posterior when the tasks are not known."""
    if tasks is None:
        return posterior.astype(np.float32)
    index = {t: i for i, t in enumerate(task_names)}
    onehot = np.zeros((len(tasks), len(task_names)), dtype=np.float32)
    for row, task in enumerate(map(str, tasks)):
        if task in index:
            onehot[row, index[task]] = 1.0
    return onehot


class SuccessPredictor:
    """P(expert answers well | query vector, task) for every expert at once, as a logit correction of a base
    estimate (torch, CPU, seconds)."""

    def __init__(self, params: LearnedRouterParams):
        self.params = params
        self.network = None

    def fit(self, features: np.ndarray, scores: np.ndarray, base: np.ndarray) -> "SuccessPredictor":
        import torch

        p = self.params
        torch.manual_seed(p.seed)
        width, experts = features.shape[1], scores.shape[1]
        layers = ([torch.nn.Linear(width, p.hidden), torch.nn.GELU(), torch.nn.Dropout(p.dropout),
                   torch.nn.Linear(p.hidden, experts)] if p.hidden else [torch.nn.Linear(width, experts)])
        network = torch.nn.Sequential(*layers)
        with torch.no_grad():  # start as the base estimate: the network learns only where a query departs from it
            network[-1].weight.zero_()
            network[-1].bias.zero_()
        self.network = train_on_outcomes(network, features, scores, _logit(base), epochs=p.epochs,
                                         learning_rate=p.learning_rate, weight_decay=p.weight_decay, seed=p.seed)
        return self

    def predict(self, features: np.ndarray, base: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(predict_logits(self.network, features) + _logit(base))))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float32), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


class LearnedRouter:
    """The knn-router's memory and estimate, plus a success predictor trained on the same memory (module doc)."""

    name = "learned-router"

    def __init__(self, models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str],
                 knn_params: KnnRouterParams | None = None, params: LearnedRouterParams | None = None,
                 prices: dict[str, float] | None = None):
        self.params = params or LearnedRouterParams()
        self.knn = KnnRouter(models, vectors, scores, tasks, knn_params, prices)
        self.models = self.knn.models
        strength = self.params.task_prior_strength
        self.task_params = self.knn.params.model_copy(update={
            "prior": "task", "prior_strength": self.knn.params.prior_strength if strength is None else strength})
        tasks = list(map(str, tasks))
        train_idx, train_sims = self.knn.neighbours(self.knn.vectors, exclude=np.arange(len(self.knn.vectors)))
        features, base = self._features(self.knn.vectors, train_idx, train_sims, tasks)
        self.predictor = SuccessPredictor(self.params).fit(features, self.knn.scores, base)

    def _features(self, vectors: np.ndarray, idx: np.ndarray, sims: np.ndarray,
                  tasks: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """The network's inputs (vector, task) and the knn estimate it corrects."""
        knn = self.knn
        posterior = None if tasks is not None else knn.task_posterior(idx, sims, knn.params.task_k)
        features = np.hstack([np.asarray(vectors, dtype=np.float32), task_features(tasks, knn.task_names, posterior)])
        return features, self.knn_estimate(idx, sims, tasks)

    def knn_estimate(self, idx: np.ndarray, sims: np.ndarray, tasks: Sequence[str] | None,
                     task_prior_strength: float | None = None) -> np.ndarray:
        """The neighbourhood vote shrunk to the known task's accuracy (or, tasks unknown, to the task vote)."""
        if tasks is None:
            return self.knn.expected_scores(idx, sims)
        params = self.task_params if task_prior_strength is None else self.task_params.model_copy(
            update={"prior_strength": task_prior_strength})
        return self.knn.expected_scores(idx, sims, params, tasks=tasks)

    def estimates(self, vectors: np.ndarray, tasks: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(knn estimate, learned estimate), each (n, models)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        idx, sims = self.knn.neighbours(vectors)
        features, base = self._features(vectors, idx, sims, tasks)
        return base, self.predictor.predict(features, base)

    def expected_scores(self, vectors: np.ndarray, tasks: Sequence[str] | None = None,
                        blend: float | None = None) -> np.ndarray:
        knn, learned = self.estimates(vectors, tasks)
        weight = self.params.blend if blend is None else blend
        return weight * learned + (1 - weight) * knn

    def route(self, vectors: np.ndarray, tasks: Sequence[str] | None = None) -> np.ndarray:
        return self.knn.choose(self.expected_scores(vectors, tasks))


class LearnedTuning(BaseModel):
    task_prior_strength: float
    blend: float
    cv_accuracy_by_strength: dict[float, float] = Field(description="mean routed score (percent) of the shrunk knn "
                                                                    "estimate over the folds, per strength")
    cv_accuracy_by_blend: dict[float, float] = Field(description="the same, per blend, at the chosen strength")
    folds: int


def tune_learned_router(models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str], *,
                        knn_params: KnnRouterParams | None = None, params: LearnedRouterParams | None = None,
                        prices: dict[str, float] | None = None, strengths: Sequence[float] = TASK_PRIOR_STRENGTHS,
                        blends: Sequence[float] = BLENDS, folds: int = 5, seed: int = 0) -> LearnedTuning:
    """The known-task prior's strength with the best mean routed score over `folds` folds of the training data
    (the shrunk knn estimate alone: cheap), then, at that strength, the blend. A non-zero blend is kept only if
    its gain over blend 0 exceeds one standard error of the per-fold gains: differences within fold noise picked
    blends that lost on held-out data. The test split is never seen."""
    from coe_router.evaluation.tuning import fold_ids

    params = params or LearnedRouterParams()
    tasks = np.asarray(list(map(str, tasks)), dtype=object)
    assignment = fold_ids(len(tasks), folds, seed)
    scores_filled = np.nan_to_num(scores)

    def routed(router: KnnRouter, estimate: np.ndarray, held: np.ndarray) -> float:
        choice = router.choose(estimate)
        return float(scores_filled[held][np.arange(len(choice)), choice].mean() * 100)

    by_strength = np.zeros((len(strengths), folds))
    for fold in range(folds):
        fit, held = assignment != fold, assignment == fold
        knn = KnnRouter(models, vectors[fit], scores[fit], tasks[fit].tolist(), knn_params, prices)
        idx, sims = knn.neighbours(vectors[held])
        for s, strength in enumerate(strengths):
            task_params = knn.params.model_copy(update={"prior": "task", "prior_strength": strength})
            by_strength[s, fold] = routed(knn, knn.expected_scores(idx, sims, task_params, tasks[held]), held)
    strength_means = by_strength.mean(axis=1)
    strength = strengths[min(range(len(strengths)), key=lambda s: (-round(strength_means[s], 9), s))]

    tuned = params.model_copy(update={"task_prior_strength": strength})
    by_blend = np.zeros((len(blends), folds))
    for fold in range(folds):
        fit, held = assignment != fold, assignment == fold
        router = LearnedRouter(models, vectors[fit], scores[fit], tasks[fit].tolist(), knn_params, tuned, prices)
        knn, learned = router.estimates(vectors[held], tasks[held].tolist())
        for b, blend in enumerate(blends):
            by_blend[b, fold] = routed(router.knn, blend * learned + (1 - blend) * knn, held)
    blend_means = by_blend.mean(axis=1)
    best = min(range(len(blends)), key=lambda b: (-round(blend_means[b], 9), blends[b]))
    gain = by_blend[best] - by_blend[int(np.argmin(blends))]
    standard_error = gain.std(ddof=1) / np.sqrt(folds) if folds > 1 else 0.0
    if gain.mean() <= standard_error:  # within fold noise of the shrunk knn estimate: keep the simpler router
        best = int(np.argmin(blends))
    return LearnedTuning(task_prior_strength=strength, blend=blends[best],
                         cv_accuracy_by_strength={float(s): round(float(m), 3) for s, m in zip(strengths, strength_means)},
                         cv_accuracy_by_blend={float(b): round(float(m), 3) for b, m in zip(blends, blend_means)},
                         folds=folds)
