"""Quality/cost curves: sweep a router's cost weight on the test split and summarise the trade-off.

Each router picks, per query, the model maximising `estimated score - lambda x price / max price`
(coe_router.routing.query_router.KnnRouter.choose for the knn-router; for the task map, the train accuracy of the
query's task, gold for `category`, classified for `two-stage`). Every lambda gives one point (accuracy, mean cost
per query). The summary figures (defined in docs/EVALUATION.md):

- Pareto points: no other point (any router, any single model) is at least as accurate and at most as costly;
- weak / strong: the cheapest single model and the best single model (chosen on train, as `best-single`);
- APGR: the area under the router's gap-recovered curve PGR(c) for c in [0, 1], where c is the cost fraction
  (cost - cost_weak) / (cost_strong - cost_weak), PGR = (acc - acc_weak) / (acc_strong - acc_weak), and the curve
  is the upper concave envelope of the router's points plus the weak model at (0, 0) (any two settings can be
  mixed query by query), held flat past its highest point;
- CPT(x%): the least cost on that envelope recovering x% of the gap, as % of the strong model's cost;
- the cheapest setting that reaches the best single's accuracy, and the most accurate one within its cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.evaluation.bootstrap import Interval, paired_bootstrap
from coe_router.evaluation.leaderboard import rank_models
from coe_router.evaluation.replay import ReplayBench, pick_shares
from coe_router.evaluation.replay_routers import BestSingleRouter, TaskMapRouter
from coe_router.routing.query_router import KnnRouter

DEFAULT_WEIGHTS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
CURVE_ROUTERS = ("knn-router", "category", "two-stage")
GAP_TARGETS = (50, 80)


class CurvePoint(BaseModel):
    router: str
    cost_weight: float
    accuracy: float = Field(description="mean score of the routed model, percent")
    cost: float = Field(description="mean cost per query of the routed model")
    picks: dict[str, float] = Field(default_factory=dict)
    pareto: bool = False

    @property
    def label(self) -> str:
        return f"{self.router} (lambda={self.cost_weight:g})"


class SingleModel(BaseModel):
    model: str
    accuracy: float
    cost: float
    pareto: bool = False


class CostTarget(BaseModel):
    """Where a router's envelope first recovers `gap` percent of the weak-to-strong accuracy gap."""

    gap: int
    cost: float
    percent_of_strong: float = Field(description="cost / strong model's cost x 100")
    fraction: float = Field(description="c = (cost - cost_weak) / (cost_strong - cost_weak)")


class RouterCurve(BaseModel):
    router: str
    points: list[CurvePoint]
    apgr: float | None = Field(None, description="None when the strong model is not both dearer and better than the weak one")
    cpt: list[CostTarget | None] = Field(default_factory=list, description="one per GAP_TARGETS entry")
    matches_best_single: CurvePoint | None = Field(None, description="cheapest setting with accuracy >= best single's")
    at_best_single_cost: CurvePoint | None = Field(None, description="most accurate setting costing <= best single")


class CurveReport(BaseModel):
    n: int
    cost_unit: str
    weights: list[float]
    singles: list[SingleModel]
    weak: SingleModel
    strong: SingleModel
    routers: list[RouterCurve]
    intervals: list[Interval]

    def router(self, name: str) -> RouterCurve:
        return next(r for r in self.routers if r.router == name)


def pareto_mask(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other point is at least as accurate and at most as costly, and better in one of the two."""
    accuracy, cost = np.asarray(accuracy, dtype=float), np.asarray(cost, dtype=float)
    better = (accuracy[None, :] >= accuracy[:, None]) & (cost[None, :] <= cost[:, None])
    strictly = (accuracy[None, :] > accuracy[:, None]) | (cost[None, :] < cost[:, None])
    return ~(better & strictly).any(axis=1)


def gap_envelope(fraction: Sequence[float], gap: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the upper concave envelope of the points and (0, 0), up to its highest point (so it rises)."""
    best: dict[float, float] = {0.0: 0.0}
    for x, y in zip(map(float, fraction), map(float, gap)):
        best[x] = max(y, best.get(x, -np.inf))
    hull: list[tuple[float, float]] = []
    for x, y in sorted(best.items()):
        while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (y - hull[-2][1])
                                  - (hull[-1][1] - hull[-2][1]) * (x - hull[-2][0])) >= 0:
            hull.pop()
        hull.append((x, y))
    top = int(np.argmax([y for _, y in hull]))
    xs, ys = zip(*hull[: top + 1])
    return np.array(xs), np.array(ys)


def apgr(xs: np.ndarray, ys: np.ndarray) -> float:
    """Integral over c in [0, 1] of the envelope, held flat right of its last vertex (np.interp does that)."""
    grid = np.unique(np.clip(np.concatenate([[0.0, 1.0], xs]), 0.0, 1.0))
    values = np.interp(grid, xs, ys)
    return float(np.sum((grid[1:] - grid[:-1]) * (values[1:] + values[:-1]) / 2))


def fraction_for_gap(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    """Least c at which the envelope reaches `target` (None if it never does)."""
    if ys[-1] < target:
        return None
    i = int(np.argmax(ys >= target))
    if i == 0:
        return float(xs[0])
    return float(xs[i - 1] + (target - ys[i - 1]) * (xs[i] - xs[i - 1]) / (ys[i] - ys[i - 1]))


def _task_map_choices(bench: ReplayBench, tasks: Sequence[str], weight: float) -> np.ndarray:
    """Task -> expert with the cost term: rank by train task accuracy - weight x price / max price (the
    leaderboard's own tie rules); weight 0 is exactly the `category` / `two-stage` router."""
    board = bench.leaderboard
    if weight == 0:
        return TaskMapRouter(bench.models, board).route(tasks)
    prices = dict(zip(bench.models, bench.price_array / bench.price_array.max()))
    penalised = lambda accuracy: {m: a - weight * prices[m] for m, a in accuracy.items()}
    best = {t: rank_models(penalised(board.accuracy[t]), bench.models, board.prices, board.overall_accuracy)[0]
            for t in board.tasks}
    fallback = rank_models(penalised(board.overall_accuracy), bench.models, board.prices)[0]
    index = {m: i for i, m in enumerate(bench.models)}
    return np.array([index[best.get(str(t), fallback)] for t in tasks], dtype=int)


def sweep(bench: ReplayBench, weights: Sequence[float], routers: Sequence[str] = CURVE_ROUTERS
          ) -> dict[str, list[np.ndarray]]:
    """Model choices on the test questions per router and cost weight (one neighbour search for the knn-router)."""
    if bench.price_array is None:
        raise ValueError("a quality/cost curve needs a price per model (a price list, or recorded costs on train)")
    choices: dict[str, list[np.ndarray]] = {}
    for router in routers:
        if router == "knn-router":
            bench._need_vectors(router)
            knn = KnnRouter(bench.models, bench.train_vectors, bench.train.scores, bench.train.categories.tolist(),
                            bench.knn_params.model_copy(update={"cost_weight": 0.0}), bench.prices)
            expected = knn.expected_scores(*knn.neighbours(bench.test_vectors))
            choices[router] = [knn.choose(expected, w) for w in weights]
        elif router in ("category", "two-stage"):
            tasks = bench.test.categories if router == "category" else [d.task for d in bench.decisions]
            choices[router] = [_task_map_choices(bench, tasks, w) for w in weights]
        else:
            raise ValueError(f"no cost sweep for router {router!r} ({', '.join(CURVE_ROUTERS)})")
    return choices


def _summarise(name: str, points: list[CurvePoint], weak: SingleModel, strong: SingleModel) -> RouterCurve:
    curve = RouterCurve(router=name, points=points)
    reaching = [p for p in points if p.accuracy >= strong.accuracy]
    affordable = [p for p in points if p.cost <= strong.cost]
    curve.matches_best_single = min(reaching, key=lambda p: (p.cost, -p.accuracy), default=None)
    curve.at_best_single_cost = max(affordable, key=lambda p: (p.accuracy, -p.cost), default=None)
    if strong.cost <= weak.cost or strong.accuracy <= weak.accuracy:
        return curve
    span_c, span_a = strong.cost - weak.cost, strong.accuracy - weak.accuracy
    xs, ys = gap_envelope([(p.cost - weak.cost) / span_c for p in points],
                          [(p.accuracy - weak.accuracy) / span_a for p in points])
    curve.apgr = round(apgr(xs, ys), 4)
    for gap in GAP_TARGETS:
        c = fraction_for_gap(xs, ys, gap / 100)
        cost = None if c is None else weak.cost + c * span_c
        curve.cpt.append(None if c is None else CostTarget(gap=gap, cost=round(cost, 6), fraction=round(c, 4),
                                                           percent_of_strong=round(100 * cost / strong.cost, 2)))
    return curve


def cost_curve(bench: ReplayBench, costs: np.ndarray, cost_unit: str, weights: Sequence[float] = DEFAULT_WEIGHTS,
               routers: Sequence[str] = CURVE_ROUTERS, samples: int | None = None) -> CurveReport:
    """Sweep every router over `weights` and summarise; `costs` is the test split's (questions, models) cost of
    each answer (recorded per query, or the model's price); routing uses `bench.prices`."""
    test, rows = bench.test, np.arange(bench.test.n)
    accuracy = lambda choice: round(float(test.scores[rows, choice].mean() * 100), 4)
    mean_cost = lambda choice: round(float(costs[rows, choice].mean()), 6)
    singles = [SingleModel(model=m, accuracy=accuracy(np.full(test.n, i)), cost=mean_cost(np.full(test.n, i)))
               for i, m in enumerate(bench.models)]
    train_means = bench.train.scores.mean(axis=0)
    strong_index = BestSingleRouter.fit(bench.models, bench.train.scores, bench.prices).choice
    weak_index = min(range(len(singles)), key=lambda i: (bench.price_array[i], -train_means[i], i))
    all_choices = sweep(bench, weights, routers)
    points = {name: [CurvePoint(router=name, cost_weight=w, accuracy=accuracy(c), cost=mean_cost(c),
                                picks=pick_shares(bench.models, c)) for w, c in zip(weights, choices)]
              for name, choices in all_choices.items()}
    flat = [p for group in points.values() for p in group]
    mask = pareto_mask([p.accuracy for p in flat + singles], [p.cost for p in flat + singles])
    for item, on in zip(flat + singles, mask):
        item.pareto = bool(on)
    weak, strong = singles[weak_index], singles[strong_index]
    curves = [_summarise(name, group, weak, strong) for name, group in points.items()]
    intervals = _intervals(test.scores, all_choices, curves, strong_index, samples)
    return CurveReport(n=test.n, cost_unit=cost_unit, weights=list(weights), singles=singles, weak=weak,
                       strong=strong, routers=curves, intervals=intervals)


def _intervals(scores: np.ndarray, choices: dict[str, list[np.ndarray]], curves: list[RouterCurve], strong: int,
               samples: int | None) -> list[Interval]:
    """Paired bootstrap intervals: each router's first setting, the cheapest one matching the best single and the
    best one within its cost, against the best single; the knn-router against the task maps (first setting)."""
    rows = np.arange(len(scores))
    achieved = lambda choice: scores[rows, choice]
    options = {} if samples is None else {"samples": samples}
    best_single = achieved(np.full(len(scores), strong))
    intervals = []
    for curve in curves:
        anchors = [curve.points[0], curve.matches_best_single, curve.at_best_single_cost]
        for index in dict.fromkeys(curve.points.index(p) for p in anchors if p is not None):
            intervals.append(paired_bootstrap(achieved(choices[curve.router][index]), best_single,
                                              names=(curve.points[index].label, "best-single"), **options))
    knn = next((c for c in curves if c.router == "knn-router"), None)
    for other in (c for c in curves if knn is not None and c.router in ("category", "two-stage")):
        intervals.append(paired_bootstrap(achieved(choices["knn-router"][0]), achieved(choices[other.router][0]),
                                          names=(knn.points[0].label, other.points[0].label), **options))
    return intervals
