"""Figures of the CoE-Ops paper: capability radar charts (Fig. 5-8) and confusion-matrix heatmaps (Fig. 9-12),
and the quality/cost curves of `coe eval curve`.

matplotlib is an optional dependency (`pip install 'coe-router[eval]'`); everything else in the package works
without it, so it is imported only here and only when a figure is asked for. The Agg backend renders to files
without a display (servers, CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from coe_router.evaluation.leaderboard import Leaderboard

if TYPE_CHECKING:
    from coe_router.evaluation.curves import CurveReport


class PlotDependencyError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotDependencyError(
            "plots need matplotlib, which is not installed: pip install 'coe-router[eval]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def radar_models(leaderboard: Leaderboard, models: Sequence[str] | None = None, top: int = 5) -> list[str]:
    """The models to draw: the given ones, else the `top` best-average plus every task's best expert."""
    if models:
        unknown = [m for m in models if m not in leaderboard.models]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; the leaderboard has {leaderboard.models}")
        return list(models)
    chosen = list(leaderboard.overall_ranking[:top])
    for task in leaderboard.tasks:
        if leaderboard.best[task] not in chosen:
            chosen.append(leaderboard.best[task])
    return chosen


def plot_radar(leaderboard: Leaderboard, out: str | Path, *, models: Sequence[str] | None = None, top: int = 5,
               extra: dict[str, dict[str, float]] | None = None, title: str | None = None) -> Path:
    """Per-task accuracy of each model on one polar chart; `extra` adds series such as a router's per-task figures
    (task -> accuracy in [0, 1]), drawn dashed so a CoE is told apart from its experts."""
    plt = _pyplot()
    tasks = leaderboard.tasks
    if len(tasks) < 3:
        raise ValueError(f"a radar chart needs at least 3 tasks, the leaderboard has {len(tasks)}")
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False).tolist()
    angles += angles[:1]
    fig, ax = plt.subplots(figsize=(8, 8), subplot_kw={"polar": True})
    series = [(m, {t: leaderboard.accuracy[t].get(m, np.nan) for t in tasks}, "-") for m in radar_models(leaderboard, models, top)]
    series += [(name, values, "--") for name, values in (extra or {}).items()]
    for name, values, style in series:
        points = [100 * values.get(t, np.nan) for t in tasks]
        points += points[:1]
        ax.plot(angles, points, style, linewidth=1.6, label=name)
        ax.fill(angles, points, alpha=0.05)
    ax.set_xticks(angles[:-1])
    ax.set_xticklabels(tasks, fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_title(title or f"Capability radar ({Path(leaderboard.source).name or 'leaderboard'})", pad=20)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    return _save(fig, plt, out)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], out: str | Path, *,
                   title: str = "Classifier confusion matrix") -> Path:
    """Row-normalised heatmap (rows: gold task, columns: predicted) with the raw counts written in each cell."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels=labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_xlabel("predicted task")
    ax.set_ylabel("gold task")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if counts[i, j]:
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold task")
    ax.set_title(title)
    return _save(fig, plt, out)


def plot_curve(report: CurveReport, out: str | Path, *, title: str = "Quality vs cost") -> Path:
    """Accuracy against mean cost per query: one line per router over its cost weights, the single models as
    labelled dots, Pareto points ringed, dotted guides at the best single model's accuracy and cost."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    for curve in report.routers:
        points = sorted(curve.points, key=lambda p: (p.cost, p.accuracy))
        ax.plot([p.cost for p in points], [p.accuracy for p in points], "-o", markersize=4, linewidth=1.4,
                label=f"{curve.router}" + (f" (APGR {curve.apgr:.2f})" if curve.apgr is not None else ""))
    singles = report.singles
    ax.scatter([s.cost for s in singles], [s.accuracy for s in singles], marker="s", color="grey", zorder=3,
               label="single models")
    for s in singles:
        ax.annotate(s.model, (s.cost, s.accuracy), textcoords="offset points", xytext=(4, -9), fontsize=7, color="dimgrey")
    frontier = [p for curve in report.routers for p in curve.points if p.pareto] + [s for s in singles if s.pareto]
    ax.scatter([p.cost for p in frontier], [p.accuracy for p in frontier], s=90, facecolors="none", edgecolors="black",
               linewidths=1.0, zorder=4, label="Pareto points")
    ax.axhline(report.strong.accuracy, linestyle=":", color="black", linewidth=0.8)
    ax.axvline(report.strong.cost, linestyle=":", color="black", linewidth=0.8)
    ax.set_xlabel(f"mean cost per query ({report.cost_unit})")
    ax.set_ylabel("accuracy (mean score, %)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, plt, out)


def _save(fig, plt, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
