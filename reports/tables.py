"""Markdown tables and lines shared by the report's sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
}


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


def router_table(report: PoolReport, cost: bool = False) -> str:
    best = report.result("best-single").accuracy
    header = ["router", "accuracy %", "vs best single"] + (["$ / 1M tok"] if cost else []) + ["routed to", "what it is"]
    rows = []
    for r in report.results:
        acc = f"{r.accuracy:.2f}" + (f" ± {r.accuracy_std:.2f}" if r.accuracy_std is not None else "")
        if r.router == "two-stage":
            acc += f" (classifier {r.classifier_accuracy:.1f}%)"
        row = [f"**{r.router}**" if r.router in ("two-stage", "knn-router") else r.router, acc,
               f"{r.accuracy - best:+.2f}"]
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
