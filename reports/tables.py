"""Markdown tables and lines shared by the report's sections."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coe_router.evaluation.curves import span_text

if TYPE_CHECKING:
    from coe_router.evaluation.curves import CurveReport
    from coe_router.evaluation.leaderboard import Leaderboard
    from coe_router.evaluation.replay import ClassifierReport, ReplayResult
    from coe_router.routing.query_router import KnnRouterParams
    from reports.pools import PoolReport

ROUTER_NOTES = {
    "random": "uniform random model per question (mean of 20 seeds)",
    "best-single": "the best model on train, always",
    "oracle": "any model that got the question right (ceiling)",
    "category": "gold task -> best train expert (a perfect classifier)",
    "two-stage": "knn-classified task -> best train expert (CoE-Ops pipeline)",
    "knn-router": "query-level: neighbours' recorded outcomes, shrunk to the task prior",
    "learned-router": "knn estimate shrunk to the gold task's accuracy + a success predictor, both weights by CV",
    "mf-router": "RouteLLM-style matrix factorisation of (query + gold task, expert), trained on the outcomes",
}


@dataclass(frozen=True)
class Figures:
    """Where the report's images go (`folder`) and how the markdown links them (`link`, relative to the file)."""

    folder: Path
    link: str = "img"

    def draw(self, name: str, alt: str, plot: Callable, *args, **kwargs) -> str:
        """Draw with `plot(*args, <folder>/<name>, **kwargs)` and return the markdown image line."""
        plot(*args, self.folder / name, **kwargs)
        return f"![{alt}]({self.link}/{name})"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def picks(result: ReplayResult, top: int = 3) -> str:
    items = list(result.picks.items())
    text = ", ".join(f"{m} {100 * share:.0f}%" for m, share in items[:top])
    return text + (f", +{len(items) - top} more" if len(items) > top else "")


def knn_text(params: KnnRouterParams) -> str:
    prior = "no prior" if params.prior == "none" else f"{params.prior} prior x{params.prior_strength:g}"
    weighting = params.weighting + (f" (T={params.temperature:g})" if params.weighting == "softmax" else "")
    return f"k={params.k}, {weighting}, {prior}, task k={params.task_k}"


def difference(result: ReplayResult, baseline: str) -> str:
    """`+1.20 [-0.40, +2.80]`: the result minus the baseline with its paired bootstrap 95% interval."""
    found = next((d for d in result.differences if d.b == baseline), None)
    return found.text() if found is not None else ("+0.00" if result.router == baseline else "")


def router_table(report: PoolReport, cost: bool = False) -> str:
    header = (["router", "accuracy %", "vs best single [95% CI]", "vs category [95% CI]", "vs knn-router [95% CI]"]
              + (["$ / 1M tok"] if cost else []) + ["routed to", "what it is"])
    rows = []
    for r in report.results:
        acc = f"{r.accuracy:.2f}" + (f" ± {r.accuracy_std:.2f}" if r.accuracy_std is not None else "")
        if r.router == "two-stage":
            acc += f" (classifier {r.classifier_accuracy:.1f}%)"
        row = [f"**{r.router}**" if r.router in ("two-stage", "knn-router") else r.router, acc,
               difference(r, "best-single"), difference(r, "category"), difference(r, "knn-router")]
        if cost:
            row.append(f"{r.mean_price:.3f}" if r.mean_price is not None else "")
        row += [picks(r) if r.router != "random" else "-", ROUTER_NOTES[r.router]]
        rows.append(row)
    return table(header, rows)


def classifier_line(report: PoolReport) -> str:
    c = report.classifier
    loo = ", ".join(f"{k}: {v:.1f}" for k, v in report.classifier_loo.items())
    return (f"knn classifier (k={report.classifier_k}, chosen by leave-one-out on train: {loo}): accuracy "
            f"**{c.accuracy:.2f}%**, macro P/R/F1 {c.macro_precision:.2f} / {c.macro_recall:.2f} / {c.macro_f1:.2f}, "
            f"weighted P/R/F1 {c.weighted_precision:.2f} / {c.weighted_recall:.2f} / {c.weighted_f1:.2f} "
            f"(n={c.n}).")


def per_class_table(report: ClassifierReport) -> str:
    rows = [[task, f"{f.precision:.1f}", f"{f.recall:.1f}", f"{f.f1:.1f}", f.support]
            for task, f in sorted(report.per_class.items(), key=lambda kv: -kv[1].f1)]
    return table(["task", "precision", "recall", "F1", "n"], rows)


def confusions(report: ClassifierReport, top: int = 6) -> str:
    pairs = []
    for i, gold in enumerate(report.labels):
        for j, predicted in enumerate(report.labels):
            if i != j and i < len(report.confusion) and report.confusion[i][j]:
                pairs.append((report.confusion[i][j], gold, predicted))
    pairs.sort(reverse=True)
    return ", ".join(f"{g} -> {p} ({n})" for n, g, p in pairs[:top])


def leaderboard_table(board: Leaderboard) -> str:
    rows = []
    for task in board.tasks:
        ranked = board.ranking[task]
        rows.append([task, board.task_counts.get(task, ""), f"{ranked[0]} ({100 * board.accuracy[task][ranked[0]]:.1f})",
                     f"{ranked[1]} ({100 * board.accuracy[task][ranked[1]]:.1f})" if len(ranked) > 1 else ""])
    best = board.best_average
    rows.append(["*best average (eq. 8)*", sum(board.task_counts.values()),
                 f"{best} ({100 * board.overall_accuracy[best]:.1f})", ""])
    return table(["task", "n (train)", "best expert (eq. 5), acc %", "runner-up"], rows)


def knn_tuning_lines(report: PoolReport) -> str:
    lines = [(f"knn-router settings chosen by 5-fold CV on train: {knn_text(report.knn)} "
             f"(CV accuracy {report.knn_cv:.2f}%). Next best settings:"), ""]
    for row in report.knn_top[1:5]:
        lines.append(f"- {knn_text(row.params)}: {row.accuracy:.2f}%")
    return "\n".join(lines)


def learned_tuning_line(report: PoolReport) -> str:
    params = report.result("learned-router").params
    strengths = ", ".join(f"{float(k):g}: {v:.2f}" for k, v in params["cv_accuracy_by_strength"].items())
    blends = ", ".join(f"{float(k):g}: {v:.2f}" for k, v in params["cv_accuracy_by_blend"].items())
    return (f"learned-router settings chosen by 5-fold CV on train: gold-task prior x{params['task_prior_strength']:g} "
            f"(CV % by strength: {strengths}), blend {params['blend']:g} (CV % by blend: {blends}; a non-zero blend "
            "must gain more than one standard error of the per-fold gains).")


def learned_table(reports: dict[str, PoolReport]) -> str:
    """Per pool: each learned router against the task map and the knn-router, with paired 95% intervals."""
    rows = []
    for name, report in reports.items():
        for router in ("learned-router", "mf-router"):
            r = report.result(router)
            rows.append([name, router, f"{r.accuracy:.2f}", f"{r.macro_accuracy:.2f}", difference(r, "category"),
                         difference(r, "knn-router"), f"{report.result('knn-router').accuracy:.2f}",
                         f"{report.result('category').accuracy:.2f}"])
    return table(["pool", "router", "accuracy %", "macro %", "vs category [95% CI]", "vs knn-router [95% CI]",
                  "knn-router %", "category %"], rows)


def _setting(point, strong_cost: float) -> str:
    if point is None:
        return "not reached"
    return f"lambda={point.cost_weight:g}: {point.accuracy:.2f}% at {point.cost:.3f} ({100 * point.cost / strong_cost:.0f}%)"


def curve_summary_table(report: CurveReport) -> str:
    """Per router and for the mix of single models: APGR, CPT(50%/80%) and RouteLLM's call share, each with its
    bootstrap 95% interval, the cheapest setting matching the best single and the best one within its cost."""
    rows = []
    curves = [*report.routers, *([report.mix_of_singles] if report.mix_of_singles is not None else [])]
    for curve in curves:
        cpt = [(f"{c.percent_of_strong:.1f}%" if c is not None else "not reached")
               + span_text(curve.cpt_interval[g] if g < len(curve.cpt_interval) else None, "%")
               for g, c in enumerate(curve.cpt)]
        calls = [(f"{c.strong_share:.1f}%" if c is not None else "not reached")
                 + span_text(curve.calls_interval[g] if g < len(curve.calls_interval) else None, "%")
                 for g, c in enumerate(curve.calls)]
        apgr = (f"{curve.apgr:.3f}" + span_text(curve.apgr_interval)) if curve.apgr is not None else "-"
        singles = curve is report.mix_of_singles
        rows.append([curve.router, apgr, *cpt, *calls,
                     "-" if singles else _setting(curve.matches_best_single, report.strong.cost),
                     "-" if singles else _setting(curve.at_best_single_cost, report.strong.cost)])
    return table(["router", "APGR [95% CI]", "CPT(50%)", "CPT(80%)", "strong calls for 50%", "strong calls for 80%",
                  "cheapest setting reaching the best single's accuracy",
                  "most accurate setting within the best single's cost"], rows)


def curve_points_table(report: CurveReport) -> str:
    """Accuracy % / cost of every router at every cost weight; Pareto points in bold."""
    cell = lambda p: f"**{p.accuracy:.2f} / {p.cost:.3f}**" if p.pareto else f"{p.accuracy:.2f} / {p.cost:.3f}"
    rows = [[f"{w:g}", *(cell(curve.points[i]) for curve in report.routers)] for i, w in enumerate(report.weights)]
    return table(["lambda", *(f"{curve.router} acc % / cost" for curve in report.routers)], rows)


def interval_lines(report: CurveReport) -> str:
    return "\n".join(f"- {i.a} minus {i.b}: {i.text()} points" for i in report.intervals)
