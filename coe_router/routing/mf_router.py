"""A matrix-factorisation router after RouteLLM (Ong et al., 2024): a learned projection of the query meets a
learned embedding of each expert, and their product scores how well that expert answers that query.

    logit(q, m) = w . (E[m] * (W x(q))) + b[m]

x(q) is the frozen MiniLM vector of the query with its task one-hot appended (zero for an unknown task), W a
trainable projection to `dim` dimensions, E the experts' embeddings. RouteLLM fits this on pairwise preferences
between a strong and a weak model; with recorded outcomes for every expert the same model is fitted directly to
each (query, expert) outcome with a masked binary cross-entropy (graded scores as soft labels), so it ranks any
number of experts. Unlike the knn-router it learns a representation, and it has no memory to search at routing
time: one matrix product per query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.routing.learned_router import predict_logits, task_features, train_on_outcomes
from coe_router.routing.query_router import argmax_with_ties, preference_order, price_vector


class MatrixFactorizationParams(BaseModel):
    """Defaults chosen by 5-fold CV on the training splits of the shared pools (<= 8B MMLU-Pro: 46.5% against
    43.0-46.0% for the other settings of epochs 5/20/50 x dim 16/128 x weight decay 0.01/0.1 x lr 1e-3/3e-3;
    LLMRouter: every setting within 0.2 points)."""

    dim: int = Field(128, gt=0, description="size of the query projection and of each expert's embedding")
    epochs: int = Field(20, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    seed: int = 0


def _network(width: int, experts: int, dim: int):
    import torch

    class Factorisation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.project = torch.nn.Linear(width, dim, bias=False)
            self.experts = torch.nn.Parameter(torch.randn(experts, dim) * dim ** -0.5)
            self.score = torch.nn.Linear(dim, 1, bias=False)
            self.bias = torch.nn.Parameter(torch.zeros(experts))

        def forward(self, x):
            query = self.project(x)  # (n, dim)
            return self.score(query[:, None, :] * self.experts[None, :, :]).squeeze(-1) + self.bias

    return Factorisation()


class MatrixFactorizationRouter:
    """Trained once on a memory of (query vector, task, per-expert outcome); routes by the highest predicted score,
    ties to the better expert on train, then the cheaper."""

    name = "mf-router"

    def __init__(self, models: list[str], vectors: np.ndarray, scores: np.ndarray, tasks: Sequence[str],
                 params: MatrixFactorizationParams | None = None, prices: dict[str, float] | None = None):
        import torch

        self.models, self.params = list(models), params or MatrixFactorizationParams()
        self.task_names = sorted(set(map(str, tasks)))
        scores = np.asarray(scores, dtype=float)
        self.order = preference_order(np.nanmean(scores, axis=0), price_vector(self.models, prices))
        features = self._features(vectors, tasks)
        torch.manual_seed(self.params.seed)
        network = _network(features.shape[1], len(self.models), self.params.dim)
        with torch.no_grad():  # start at each expert's average outcome, so training learns the query's departure
            mean = np.clip(np.nanmean(scores, axis=0), 1e-3, 1 - 1e-3)
            network.bias.copy_(torch.as_tensor(np.log(mean / (1 - mean)), dtype=torch.float32))
        p = self.params
        self.network = train_on_outcomes(network, features, scores, None, epochs=p.epochs,
                                         learning_rate=p.learning_rate, weight_decay=p.weight_decay, seed=p.seed)

    def _features(self, vectors: np.ndarray, tasks: Sequence[str] | None) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        onehot = task_features(tasks if tasks is not None else [""] * len(vectors), self.task_names, None)
        return np.hstack([vectors, onehot])

    def expected_scores(self, vectors: np.ndarray, tasks: Sequence[str] | None = None) -> np.ndarray:
        return 1 / (1 + np.exp(-predict_logits(self.network, self._features(vectors, tasks))))

    def route(self, vectors: np.ndarray, tasks: Sequence[str] | None = None) -> np.ndarray:
        return argmax_with_ties(self.expected_scores(vectors, tasks), self.order)
