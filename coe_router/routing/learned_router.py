"""A learned query-level router: a per-expert success predictor on frozen query embeddings, stacked on the
knn-router's estimate and blended with it by a weight chosen by cross-validation on the training split.

The predictor is one small network (a hidden layer, or none: per-expert logistic regression) with a sigmoid
output per expert, trained on the recorded outcomes (graded scores are soft labels; missing cells are masked out).
Its inputs are the query's MiniLM vector and the task posterior of its nearest labelled questions (the two-stage
classifier's vote, so the task is a feature). It learns a correction in logit space on top of the knn-router's
estimate and starts at zero, so an untrained network is the knn-router. On the training rows both the posterior
and the knn estimate are computed with each question hidden from its own neighbours, as a new query sees them.

The final estimate is `blend x learned + (1 - blend) x knn-router`. `blend` 0 is the knn-router (which itself
shrinks to the task map by the evidence), so the CV choice can only pick the learned estimate where it pays on
held-out training folds: the router does not lose to the knn-router or the task map it shrinks to by design.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.routing.query_router import KnnRouter, KnnRouterParams

BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)


class LearnedRouterParams(BaseModel):
    """The predictor's training settings and the blend weight (`tune_blend` picks it by CV on train)."""

    hidden: int = Field(128, ge=0, description="hidden units (0: per-expert logistic regression)")
    epochs: int = Field(10, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    blend: float = Field(0.5, ge=0, le=1, description="weight of the learned estimate against the knn-router's")
    seed: int = 0


class SuccessPredictor:
    """P(expert answers well | query vector, task posterior) for every expert at once (torch, CPU, seconds)."""

    def __init__(self, params: LearnedRouterParams):
        self.params = params
        self.network = None

    def fit(self, features: np.ndarray, scores: np.ndarray, base: np.ndarray) -> "SuccessPredictor":
        import torch

        p = self.params
        generator = torch.Generator().manual_seed(p.seed)
        torch.manual_seed(p.seed)
        x = torch.as_tensor(features, dtype=torch.float32)
        offset = torch.as_tensor(_logit(base), dtype=torch.float32)
        known = ~np.isnan(scores)
        y = torch.as_tensor(np.nan_to_num(scores), dtype=torch.float32)
        mask = torch.as_tensor(known, dtype=torch.float32)
        width, experts = x.shape[1], y.shape[1]
        layers = ([torch.nn.Linear(width, p.hidden), torch.nn.GELU(), torch.nn.Dropout(p.dropout),
                   torch.nn.Linear(p.hidden, experts)] if p.hidden else [torch.nn.Linear(width, experts)])
        network = torch.nn.Sequential(*layers)
        with torch.no_grad():  # start as the knn-router: the network learns only where a query departs from it
            network[-1].weight.zero_()
            network[-1].bias.zero_()
        optimiser = torch.optim.AdamW(network.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        batch = 256
        network.train()
        for _ in range(p.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch):
                rows = order[start:start + batch]
                loss = (loss_fn(network(x[rows]) + offset[rows], y[rows]) * mask[rows]).sum() / mask[rows].sum().clamp(min=1)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        network.eval()
        self.network = network
        return self

    def predict(self, features: np.ndarray, base: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            logits = self.network(torch.as_tensor(features, dtype=torch.float32)) + torch.as_tensor(_logit(base))
            return torch.sigmoid(logits).numpy().astype(float)


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
        train_idx, train_sims = self.knn.neighbours(self.knn.vectors, exclude=np.arange(len(self.knn.vectors)))
        features, prior = self._features(self.knn.vectors, train_idx, train_sims)
        self.predictor = SuccessPredictor(self.params).fit(features, self.knn.scores, prior)

    def _features(self, vectors: np.ndarray, idx: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's inputs (vector, task posterior) and the knn-router's estimate it corrects."""
        posterior = self.knn.task_posterior(idx, sims, self.knn.params.task_k)
        features = np.hstack([np.asarray(vectors, dtype=np.float32), posterior.astype(np.float32)])
        return features, self.knn.expected_scores(idx, sims)

    def estimates(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(knn-router estimate, learned estimate), each (n, models)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        idx, sims = self.knn.neighbours(vectors)
        return self.knn.expected_scores(idx, sims), self.predictor.predict(*self._features(vectors, idx, sims))

    def expected_scores(self, vectors: np.ndarray, blend: float | None = None) -> np.ndarray:
        knn, learned = self.estimates(vectors)
        weight = self.params.blend if blend is None else blend
        return weight * learned + (1 - weight) * knn

    def route(self, vectors: np.ndarray) -> np.ndarray:
        return self.knn.choose(self.expected_scores(vectors))


class BlendTuning(BaseModel):
    best: float
    cv_accuracy: dict[float, float] = Field(description="mean routed score (percent) over the folds, per blend")
    folds: int


def tune_blend(models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str], *,
               knn_params: KnnRouterParams | None = None, params: LearnedRouterParams | None = None,
               prices: dict[str, float] | None = None, blends: Sequence[float] = BLENDS, folds: int = 5,
               seed: int = 0) -> BlendTuning:
    """The blend with the best mean routed score over `folds` folds of the training data, kept only if its gain
    over the smallest blend (the knn-router) exceeds one standard error of the per-fold gains: differences
    within fold noise picked blends that lost on held-out data. The test split is never seen."""
    from coe_router.evaluation.tuning import fold_ids

    params = params or LearnedRouterParams()
    tasks = np.asarray(list(map(str, tasks)), dtype=object)
    assignment = fold_ids(len(tasks), folds, seed)
    per_fold = np.zeros((len(blends), folds))
    for fold in range(folds):
        fit, held = assignment != fold, assignment == fold
        router = LearnedRouter(models, vectors[fit], scores[fit], tasks[fit].tolist(), knn_params, params, prices)
        knn, learned = router.estimates(vectors[held])
        held_scores = np.nan_to_num(scores[held])
        for b, blend in enumerate(blends):
            choice = router.knn.choose(blend * learned + (1 - blend) * knn)
            per_fold[b, fold] = held_scores[np.arange(len(choice)), choice].mean() * 100
    means = per_fold.mean(axis=1)
    best = min(range(len(blends)), key=lambda b: (-round(means[b], 9), blends[b]))
    gain = per_fold[best] - per_fold[int(np.argmin(blends))]
    standard_error = gain.std(ddof=1) / np.sqrt(folds) if folds > 1 else 0.0
    if gain.mean() <= standard_error:  # within fold noise of the knn-router: keep the simpler router
        best = int(np.argmin(blends))
    return BlendTuning(best=blends[best], cv_accuracy={float(b): round(float(m), 3) for b, m in zip(blends, means)},
                       folds=folds)
