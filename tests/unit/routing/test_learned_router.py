"""The learned router: a success predictor stacked on the knn-router, its blend chosen by CV on train only."""

import numpy as np

from coe_router.routing.learned_router import LearnedRouter, LearnedRouterParams, tune_blend
from coe_router.routing.query_router import KnnRouter, KnnRouterParams


def _sign_rule(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Expert `pos` is right iff the vector's first coordinate is positive, `neg` otherwise: one linear direction,
    which a network learns from a few hundred rows while a large neighbourhood blurs it at the boundary."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    positive = vectors[:, 0] > 0
    scores = np.stack([positive, ~positive], axis=1).astype(float)
    return vectors, scores, ["only"] * n


KNN = KnnRouterParams(k=100, prior="none", prior_strength=0, task_k=5)
TRAINED = LearnedRouterParams(hidden=32, epochs=60, learning_rate=1e-2, weight_decay=0.0, dropout=0.0)


def test_the_predictor_learns_a_direction_the_neighbourhood_blurs():
    train_v, train_s, tasks = _sign_rule(600, 0)
    test_v, test_s, _ = _sign_rule(400, 1)
    router = LearnedRouter(["pos", "neg"], train_v, train_s, tasks, KNN, TRAINED.model_copy(update={"blend": 1.0}))
    learned = test_s[np.arange(400), router.route(test_v)].mean()
    knn = test_s[np.arange(400), KnnRouter(["pos", "neg"], train_v, train_s, tasks, KNN).route(test_v)].mean()
    assert learned >= 0.95 and learned > knn + 0.03


def test_blend_zero_is_the_knn_router_and_cv_picks_the_blend_that_pays():
    train_v, train_s, tasks = _sign_rule(600, 0)
    test_v, _, _ = _sign_rule(200, 1)
    zero = LearnedRouter(["pos", "neg"], train_v, train_s, tasks, KNN, TRAINED.model_copy(update={"blend": 0.0}))
    knn = KnnRouter(["pos", "neg"], train_v, train_s, tasks, KNN)
    assert (zero.route(test_v) == knn.route(test_v)).all()
    tuning = tune_blend(["pos", "neg"], train_v, train_s, tasks, knn_params=KNN, params=TRAINED, folds=3)
    assert tuning.best > 0 and tuning.cv_accuracy[tuning.best] > tuning.cv_accuracy[0.0]

