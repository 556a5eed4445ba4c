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
- calls(x%): RouteLLM's call-share form of CPT, the least share of queries sent to the strong model on the
  envelope of (strong-call share, PGR) that recovers x% of the gap;
- the cheapest setting that reaches the best single's accuracy, and the most accurate one within its cost;
- the "mix of single models" baseline: the same summary for the single models' own points (any two can be
  mixed query by query at random). On a pool with a cheap strong model most of a router's APGR is the pool's;
  the router's own contribution is its APGR above this baseline's;
- bootstrap 95% intervals on APGR, CPT and calls: the test questions resampled with replacement, every point,
  the weak and the strong model re-measured on each resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, Field

from coe_router.evaluation.bootstrap import BOOTSTRAP_SAMPLES, Interval, paired_bootstrap
from coe_router.evaluation.leaderboard import rank_models
from coe_router.evaluation.replay import ReplayBench, pick_shares
from coe_router.evaluation.replay_routers import BestSingleRouter, TaskMapRouter
from coe_router.routing.query_router import argmax_with_ties

DEFAULT_WEIGHTS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
CURVE_ROUTERS = ("knn-router", "category", "two-stage", "mf-router")
CASCADE = "cascade"
CASCADE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
"""Escalate when the knn-router's estimated score of the cheap model is below the threshold (1.01: always)."""
MIX_OF_SINGLES = "mix of single models"
GAP_TARGETS = (50, 80)


class CurvePoint(BaseModel):
    router: str
    cost_weight: float = 0.0
    accuracy: float = Field(description="mean score of the routed model, percent")
    cost: float = Field(description="mean cost per query of the routed model")
    picks: dict[str, float] = Field(default_factory=dict)
    strong_share: float = Field(0.0, description="share of the queries sent to the strong model (best single)")
    threshold: float | None = Field(None, description="the cascade's escalation threshold (cost_weight unused)")
    pareto: bool = False

    @property
    def setting(self) -> str:
        return f"threshold={self.threshold:g}" if self.threshold is not None else f"lambda={self.cost_weight:g}"

    @property
    def label(self) -> str:
        return f"{self.router} ({self.setting})"


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


class CallTarget(BaseModel):
    """Where a router's (strong-call share, PGR) envelope first recovers `gap` percent of the gap."""

    gap: int
    strong_share: float = Field(description="share of queries sent to the strong model, percent")


class RouterCurve(BaseModel):
    router: str
    points: list[CurvePoint]
    apgr: float | None = Field(None, description="None when the strong model is not both dearer and better than the weak one")
    cpt: list[CostTarget | None] = Field(default_factory=list, description="one per GAP_TARGETS entry")
    calls: list[CallTarget | None] = Field(default_factory=list, description="one per GAP_TARGETS entry")
    apgr_interval: list[float] | None = Field(None, description="bootstrap 95% interval [low, high]")
    cpt_interval: list[list[float | None] | None] = Field(
        default_factory=list, description="per GAP_TARGETS entry, [low, high] of percent_of_strong; high is None "
                                          "when the target is not reached on more than 2.5% of the resamples")
    calls_interval: list[list[float | None] | None] = Field(default_factory=list, description="the same for calls")
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
    mix_of_singles: RouterCurve | None = Field(None, description="the single models' own envelope (baseline)")
    intervals: list[Interval]

    def router(self, name: str) -> RouterCurve:
        return next(r for r in self.routers if r.router == name)


class Routed(NamedTuple):
    """What one router setting did on each test question: the score it got, what it paid, whether it called the
    strong model. A routed choice pays one model; a cascade that escalates pays two."""

    score: np.ndarray
    cost: np.ndarray
    strong: np.ndarray

    @classmethod
    def choice(cls, scores: np.ndarray, costs: np.ndarray, choice: np.ndarray, strong: int) -> "Routed":
        rows = np.arange(len(choice))
        return cls(scores[rows, choice], costs[rows, choice], (choice == strong).astype(float))


def cascade(bench: ReplayBench, costs: np.ndarray, weak: int, strong: int,
            thresholds: Sequence[float] = CASCADE_THRESHOLDS) -> list[Routed]:
    """Cheap model first, the strong model when the cheap one's estimated score (the knn-router's, on the query's
    neighbourhood) is below the threshold; an escalated query pays both calls and gets the strong model's answer.
    The recorded data has no judge of the cheap answer itself, so the escalation reads the query-level estimate:
    the sweep measures what paying for both calls costs against routing on the same estimate directly."""
    knn = bench.knn_router(cost_weight=0.0, router=CASCADE)
    estimate = knn.expected_scores(*knn.neighbours(bench.test_vectors))[:, weak]
    scores = bench.test.scores
    routed = []
    for threshold in thresholds:
        up = estimate < threshold
        routed.append(Routed(np.where(up, scores[:, strong], scores[:, weak]),
                             costs[:, weak] + np.where(up, costs[:, strong], 0.0), up.astype(float)))
    return routed


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
            knn = bench.knn_router(cost_weight=0.0)
            expected = knn.expected_scores(*knn.neighbours(bench.test_vectors))
            choices[router] = [knn.choose(expected, w) for w in weights]
        elif router == "mf-router":
            mf = bench.mf_router
            expected = mf.expected_scores(bench.test_vectors, bench.test.categories.tolist())
            penalty = bench.price_array / bench.price_array.max()
            choices[router] = [argmax_with_ties(expected - w * penalty, mf.order) for w in weights]
        elif router in ("category", "two-stage"):
            tasks = bench.test.categories if router == "category" else [d.task for d in bench.decisions]
            choices[router] = [_task_map_choices(bench, tasks, w) for w in weights]
        else:
            raise ValueError(f"no cost sweep for router {router!r} ({', '.join((*CURVE_ROUTERS, CASCADE))})")
    return choices


class _Span(BaseModel):
    """The weak and strong models' accuracy and cost on one sample of the test questions."""

    weak_accuracy: float
    weak_cost: float
    strong_accuracy: float
    strong_cost: float

    @property
    def defined(self) -> bool:
        return self.strong_cost > self.weak_cost and self.strong_accuracy > self.weak_accuracy


def _gap_summary(accuracy: Sequence[float], cost: Sequence[float], share: Sequence[float], span: _Span
                 ) -> tuple[float, list[float | None], list[float | None]]:
    """APGR, CPT (percent of the strong model's cost) and calls (percent of strong calls) per GAP_TARGETS entry."""
    pgr = [(a - span.weak_accuracy) / (span.strong_accuracy - span.weak_accuracy) for a in accuracy]
    xs, ys = gap_envelope([(c - span.weak_cost) / (span.strong_cost - span.weak_cost) for c in cost], pgr)
    cpt, calls = [], []
    share_xs, share_ys = gap_envelope(share, pgr)
    for gap in GAP_TARGETS:
        c = fraction_for_gap(xs, ys, gap / 100)
        cpt.append(None if c is None else 100 * (span.weak_cost + c * (span.strong_cost - span.weak_cost)) / span.strong_cost)
        k = fraction_for_gap(share_xs, share_ys, gap / 100)
        calls.append(None if k is None else 100 * k)
    return apgr(xs, ys), cpt, calls


def _summarise(name: str, points: list[CurvePoint], weak: SingleModel, strong: SingleModel) -> RouterCurve:
    curve = RouterCurve(router=name, points=points)
    reaching = [p for p in points if p.accuracy >= strong.accuracy]
    affordable = [p for p in points if p.cost <= strong.cost]
    curve.matches_best_single = min(reaching, key=lambda p: (p.cost, -p.accuracy), default=None)
    curve.at_best_single_cost = max(affordable, key=lambda p: (p.accuracy, -p.cost), default=None)
    span = _Span(weak_accuracy=weak.accuracy, weak_cost=weak.cost, strong_accuracy=strong.accuracy,
                 strong_cost=strong.cost)
    if not span.defined:
        return curve
    area, cpt, calls = _gap_summary([p.accuracy for p in points], [p.cost for p in points],
                                    [p.strong_share for p in points], span)
    curve.apgr = round(area, 4)
    for gap, percent, share in zip(GAP_TARGETS, cpt, calls):
        if percent is None:
            curve.cpt.append(None)
        else:
            cost = percent * strong.cost / 100
            curve.cpt.append(CostTarget(gap=gap, cost=round(cost, 6), percent_of_strong=round(percent, 2),
                                        fraction=round((cost - weak.cost) / (strong.cost - weak.cost), 4)))
        curve.calls.append(None if share is None else CallTarget(gap=gap, strong_share=round(share, 2)))
    return curve


def _summary_intervals(curves: list[RouterCurve], routed: dict[str, list[Routed]], weak: Routed, strong: Routed,
                       samples: int, seed: int = 0) -> None:
    """Bootstrap 95% intervals on each curve's APGR, CPT and calls (module doc), set on the curves in place."""
    n = len(weak.score)
    chosen = [(curve, routed[curve.router]) for curve in curves]
    achieved = np.array([r.score for _, group in chosen for r in group] + [weak.score, strong.score])
    paid = np.array([r.cost for _, group in chosen for r in group] + [weak.cost, strong.cost])
    to_strong = np.array([r.strong for _, group in chosen for r in group])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=samples).T.astype(float) / n  # (n, samples)
    accuracy, cost, share = achieved @ counts * 100, paid @ counts, to_strong @ counts
    results = {curve.router: ([], [[] for _ in GAP_TARGETS], [[] for _ in GAP_TARGETS]) for curve, _ in chosen}
    for b in range(samples):
        span = _Span(weak_accuracy=accuracy[-2, b], weak_cost=cost[-2, b], strong_accuracy=accuracy[-1, b],
                     strong_cost=cost[-1, b])
        if not span.defined:
            continue
        start = 0
        for curve, group in chosen:
            block = slice(start, start + len(group))
            start += len(group)
            area, cpt, calls = _gap_summary(accuracy[block, b], cost[block, b], share[block, b], span)
            results[curve.router][0].append(area)
            for g in range(len(GAP_TARGETS)):
                results[curve.router][1][g].append(cpt[g])
                results[curve.router][2][g].append(calls[g])
    for curve, _ in chosen:
        areas, cpts, calls = results[curve.router]
        if curve.apgr is None or not areas:
            continue
        curve.apgr_interval = [round(float(v), 4) for v in np.percentile(areas, [2.5, 97.5])]
        curve.cpt_interval = [_reach_interval(values) for values in cpts]
        curve.calls_interval = [_reach_interval(values) for values in calls]


def span_text(interval: list | None, unit: str = "") -> str:
    """` [low, high]` of a summary's interval (`high` "not reached" when missing), "" without one."""
    if not interval:
        return ""
    low, high = interval
    return f" [{low:g}{unit}, {f'{high:g}{unit}' if high is not None else 'not reached'}]"


def _reach_interval(values: list[float | None]) -> list[float | None] | None:
    """[low, high] of a target over the resamples, a missed target counting as beyond any cost; None where it is
    missed on more than 97.5% of them, `high` None where it is missed on more than 2.5%."""
    spread = np.array([np.inf if v is None else v for v in values])
    low, high = np.percentile(spread, 2.5, method="lower"), np.percentile(spread, 97.5, method="higher")
    if not np.isfinite(low):
        return None
    return [round(float(low), 2), round(float(high), 2) if np.isfinite(high) else None]


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
    choices = sweep(bench, weights, [r for r in routers if r != CASCADE])
    routed = {name: [Routed.choice(test.scores, costs, c, strong_index) for c in group] for name, group in choices.items()}
    points = {}
    for name in routers:
        if name == CASCADE:
            routed[name] = cascade(bench, costs, weak_index, strong_index)
            settings = [dict(threshold=t) for t in CASCADE_THRESHOLDS]
        else:
            settings = [dict(cost_weight=w, picks=pick_shares(bench.models, c)) for w, c in zip(weights, choices[name])]
        points[name] = [CurvePoint(router=name, accuracy=round(float(r.score.mean() * 100), 4),
                                   cost=round(float(r.cost.mean()), 6), strong_share=round(float(r.strong.mean()), 4),
                                   **setting) for r, setting in zip(routed[name], settings)]
    flat = [p for group in points.values() for p in group]
    mask = pareto_mask([p.accuracy for p in flat + singles], [p.cost for p in flat + singles])
    for item, on in zip(flat + singles, mask):
        item.pareto = bool(on)
    weak, strong = singles[weak_index], singles[strong_index]
    curves = [_summarise(name, group, weak, strong) for name, group in points.items()]
    mix = _summarise(MIX_OF_SINGLES, [CurvePoint(router=MIX_OF_SINGLES, cost_weight=0.0, accuracy=single.accuracy,
                                                 cost=single.cost, strong_share=float(i == strong_index),
                                                 picks={single.model: 1.0})
                                      for i, single in enumerate(singles)], weak, strong)
    singles_routed = [Routed.choice(test.scores, costs, np.full(test.n, i), strong_index) for i in range(len(singles))]
    _summary_intervals([*curves, mix], {**routed, MIX_OF_SINGLES: singles_routed}, singles_routed[weak_index],
                       singles_routed[strong_index], samples or BOOTSTRAP_SAMPLES)
    intervals = _intervals(routed, curves, singles_routed[strong_index].score, samples)
    return CurveReport(n=test.n, cost_unit=cost_unit, weights=list(weights), singles=singles, weak=weak,
                       strong=strong, routers=curves, mix_of_singles=mix, intervals=intervals)


def _intervals(routed: dict[str, list[Routed]], curves: list[RouterCurve], best_single: np.ndarray,
               samples: int | None) -> list[Interval]:
    """Paired bootstrap intervals: each router's first setting, the cheapest one matching the best single and the
    best one within its cost, against the best single; the knn-router against the task maps (first setting)."""
    options = {} if samples is None else {"samples": samples}
    intervals = []
    for curve in curves:
        anchors = [curve.points[0], curve.matches_best_single, curve.at_best_single_cost]
        for index in dict.fromkeys(curve.points.index(p) for p in anchors if p is not None):
            intervals.append(paired_bootstrap(routed[curve.router][index].score, best_single,
                                              names=(curve.points[index].label, "best-single"), **options))
    knn = next((c for c in curves if c.router == "knn-router"), None)
    for other in (c for c in curves if knn is not None and c.router in ("category", "two-stage")):
        intervals.append(paired_bootstrap(routed["knn-router"][0].score, routed[other.router][0].score,
                                          names=(knn.points[0].label, other.points[0].label), **options))
    return intervals
