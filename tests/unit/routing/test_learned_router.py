"""The learned routers: the success predictor stacked on the knn-router (its known-task prior and blend chosen by
CV on train only) and the matrix-factorisation router, on data where the right answer is known by construction."""

import numpy as np

from coe_router.routing.learned_router import LearnedRouter, LearnedRouterParams, tune_learned_router
from coe_router.routing.mf_router import MatrixFactorizationParams, MatrixFactorizationRouter
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


def _task_rule(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The task alone decides (expert `a` right on 90% of task A, `b` on 90% of task B, each 30% on the other);
    the vectors carry no signal, so the neighbourhood vote is noise and the task map is the right router."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tasks = rng.choice(["A", "B"], size=n).tolist()
    on_a = np.array([t == "A" for t in tasks])
    draw = rng.random((n, 2))
    scores = np.stack([draw[:, 0] < np.where(on_a, 0.9, 0.3), draw[:, 1] < np.where(on_a, 0.3, 0.9)], axis=1)
    return vectors, scores.astype(float), tasks


KNN = KnnRouterParams(k=100, prior="none", prior_strength=0, task_k=5)
TRAINED = LearnedRouterParams(hidden=32, epochs=60, learning_rate=1e-2, weight_decay=0.0, dropout=0.0)


def _accuracy(scores: np.ndarray, choices: np.ndarray) -> float:
    return float(scores[np.arange(len(choices)), choices].mean())


def test_the_predictor_learns_a_direction_the_neighbourhood_blurs():
    train_v, train_s, tasks = _sign_rule(600, 0)
    test_v, test_s, _ = _sign_rule(400, 1)
    router = LearnedRouter(["pos", "neg"], train_v, train_s, tasks, KNN, TRAINED.model_copy(update={"blend": 1.0}))
    learned = _accuracy(test_s, router.route(test_v))
    knn = _accuracy(test_s, KnnRouter(["pos", "neg"], train_v, train_s, tasks, KNN).route(test_v))
    assert learned >= 0.95 and learned > knn + 0.03


def test_blend_zero_is_the_knn_router_and_cv_picks_the_blend_that_pays():
    train_v, train_s, tasks = _sign_rule(600, 0)
    test_v, _, _ = _sign_rule(200, 1)
    zero = LearnedRouter(["pos", "neg"], train_v, train_s, tasks, KNN, TRAINED.model_copy(update={"blend": 0.0}))
    knn = KnnRouter(["pos", "neg"], train_v, train_s, tasks, KNN)
    assert (zero.route(test_v) == knn.route(test_v)).all()
    tuning = tune_learned_router(["pos", "neg"], train_v, train_s, tasks, knn_params=KNN, params=TRAINED, folds=3)
    assert tuning.blend > 0 and tuning.cv_accuracy_by_blend[tuning.blend] > tuning.cv_accuracy_by_blend[0.0]
    # one task for every row: its prior says nothing, so CV keeps the neighbours' evidence (the weakest prior)
    assert tuning.task_prior_strength == min(tuning.cv_accuracy_by_strength)


def test_a_known_task_that_decides_is_routed_as_the_task_map():
    train_v, train_s, train_tasks = _task_rule(800, 0)
    test_v, test_s, test_tasks = _task_rule(400, 1)
    params = LearnedRouterParams(epochs=2)
    tuning = tune_learned_router(["a", "b"], train_v, train_s, train_tasks, knn_params=KNN, params=params, folds=3)
    cv = tuning.cv_accuracy_by_strength
    assert tuning.task_prior_strength >= 20 and cv[tuning.task_prior_strength] > cv[5.0] + 10
    router = LearnedRouter(["a", "b"], train_v, train_s, train_tasks, KNN,
                           params.model_copy(update={"blend": tuning.blend,
                                                     "task_prior_strength": tuning.task_prior_strength}))
    task_map = np.array([0 if t == "A" else 1 for t in test_tasks])
    assert (router.route(test_v, test_tasks) == task_map).mean() >= 0.97
    knn = _accuracy(test_s, router.knn.route(test_v))
    assert _accuracy(test_s, router.route(test_v, test_tasks)) > knn + 0.1


def test_matrix_factorisation_learns_the_query_direction_and_the_task():
    params = MatrixFactorizationParams(epochs=60, learning_rate=1e-2, weight_decay=0.0, dim=16)
    train_v, train_s, tasks = _sign_rule(600, 0)
    test_v, test_s, test_tasks = _sign_rule(400, 1)
    router = MatrixFactorizationRouter(["pos", "neg"], train_v, train_s, tasks, params)
    assert _accuracy(test_s, router.route(test_v, test_tasks)) >= 0.9
    train_v, train_s, tasks = _task_rule(800, 0)
    test_v, test_s, test_tasks = _task_rule(400, 1)
    router = MatrixFactorizationRouter(["a", "b"], train_v, train_s, tasks, params)
    task_map = np.array([0 if t == "A" else 1 for t in test_tasks])
    assert (router.route(test_v, test_tasks) == task_map).mean() >= 0.9
    estimate = router.expected_scores(test_v, test_tasks)
    assert estimate.shape == (400, 2) and ((estimate > 0) & (estimate < 1)).all()
