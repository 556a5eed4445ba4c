"""Capability leaderboard -> task->expert map (CoE-Ops eq. 4, 5 and 8).

From recorded per-question outcomes (or a published model x task accuracy table) it computes each model's accuracy
per task (eq. 4), the best expert per task (eq. 5) with a full ranking for fallbacks, and the best-average expert
over all questions (eq. 8) that serves "unknown". The JSON it writes is what a config's `task_map: {from: ...}`
reads (`ranking`, `overall_ranking`), so changing experts is rebuilding a file, not editing code.

Accuracies are stored as fractions in [0, 1]; tables in percent are converted on read.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.outcomes import Outcomes

LeaderboardMissing = Literal["drop", "zero", "per-model"]
"""`drop`/`zero` as in outcomes.MissingPolicy; `per-model`: each model's accuracy over the questions it answered
(eq. 4 with a per-model N_i), the only choice that keeps every recorded answer but compares models on different
questions."""

AVERAGE_COLUMNS = {"avg", "average", "mean", "overall", "all"}
MODEL_COLUMNS = {"modelname", "model", "name", "model_name"}
COUNT_ROWS = {"count", "n", "counts", "#"}


class Leaderboard(BaseModel):
    """Per-task and overall accuracy of each model, with the rankings a router reads."""

    source: str = ""
    missing: str = "drop"
    models: list[str]
    tasks: list[str]
    task_counts: dict[str, int] = Field(description="questions per task (eq. 4's N_i); empty if the table gave none")
    accuracy: dict[str, dict[str, float]] = Field(description="task -> model -> accuracy in [0, 1] (eq. 4)")
    count: dict[str, dict[str, int]] = Field(description="task -> model -> questions the model was scored on")
    prices: dict[str, float] = Field(default_factory=dict, description="model -> price per 1M tokens, where known")
    best: dict[str, str] = Field(description="task -> best expert (eq. 5), ties to the cheaper model")
    ranking: dict[str, list[str]] = Field(description="task -> every model, best first (fallback order)")
    overall_accuracy: dict[str, float] = Field(description="model -> accuracy over all its questions (eq. 8)")
    overall_count: dict[str, int]
    best_average: str = Field(description="the best-average expert (eq. 8), used for 'unknown'")
    overall_ranking: list[str]

    def best_expert(self, task: str) -> str:
        """The task's expert, or the best-average one for a task the leaderboard has not seen."""
        return self.best.get(task, self.best_average)


def _sort_key(model: str, accuracy: float | None, prices: dict[str, float], overall: dict[str, float]) -> tuple:
    """Higher accuracy first; on a tie the cheaper model (unknown price sorts after known), then the better
    overall model, then the name so the order never depends on dict order."""
    missing = accuracy is None or math.isnan(accuracy)
    return (
        missing,
        0.0 if missing else -round(accuracy, 12),
        prices.get(model, math.inf),
        -round(overall.get(model, -1.0), 12),
        model,
    )


def rank_models(accuracy: dict[str, float], models: Sequence[str], prices: dict[str, float] | None = None,
                overall: dict[str, float] | None = None) -> list[str]:
    """All `models`, best first; models with no score for this task go last (still usable as fallbacks)."""
    prices, overall = prices or {}, overall or {}
    return sorted(models, key=lambda m: _sort_key(m, accuracy.get(m), prices, overall))


def _assemble(source: str, missing: str, models: list[str], tasks: list[str], task_counts: dict[str, int],
              accuracy: dict[str, dict[str, float]], count: dict[str, dict[str, int]],
              overall: dict[str, float], overall_count: dict[str, int], prices: dict[str, float]) -> Leaderboard:
    prices = {m: float(p) for m, p in prices.items() if m in models}
    overall_ranking = rank_models(overall, models, prices)
    ranking = {task: rank_models(accuracy[task], models, prices, overall) for task in tasks}
    return Leaderboard(
        source=source, missing=missing, models=models, tasks=tasks, task_counts=task_counts,
        accuracy={t: {m: round(a, 6) for m, a in accuracy[t].items()} for t in tasks}, count=count, prices=prices,
        best={task: ranked[0] for task, ranked in ranking.items()}, ranking=ranking,
        overall_accuracy={m: round(a, 6) for m, a in overall.items()}, overall_count=overall_count,
        best_average=overall_ranking[0], overall_ranking=overall_ranking,
    )


def build_leaderboard(outcomes: Outcomes, *, prices: dict[str, float] | None = None,
                      models: Sequence[str] | None = None, missing: LeaderboardMissing = "drop",
                      source: str = "") -> Leaderboard:
    """Leaderboard from per-question outcomes: eq. 4 per task, eq. 5 per task, eq. 8 over all questions."""
    if models:
        outcomes = outcomes.select_models(models)
    if missing != "per-model":
        outcomes = outcomes.resolve_missing(missing)
    if outcomes.n == 0:
        raise ValueError("no questions left (with missing='drop', no question was answered by every model)")
    scores, names, tasks = outcomes.scores, outcomes.models, sorted(outcomes.tasks)
    answered = ~np.isnan(scores)
    accuracy, count, task_counts = {}, {}, {}
    for task in tasks:
        rows = outcomes.categories == task
        n = answered[rows].sum(axis=0)
        total = np.nansum(scores[rows], axis=0)
        task_counts[task] = int(rows.sum())
        count[task] = {m: int(c) for m, c in zip(names, n)}
        accuracy[task] = {m: float(t / c) for m, t, c in zip(names, total, n) if c > 0}
    n_all = answered.sum(axis=0)
    overall = {m: float(t / c) for m, t, c in zip(names, np.nansum(scores, axis=0), n_all) if c > 0}
    return _assemble(source, missing, names, tasks, task_counts, accuracy, count, overall,
                     {m: int(c) for m, c in zip(names, n_all)}, prices or {})


def parse_counts(spec: str | Path | None) -> dict[str, int]:
    """Per-task counts from `task=n,task=n`, a JSON object {task: n}, or a CSV with columns task,count."""
    if spec is None:
        return {}
    path = Path(str(spec))
    if path.suffix.lower() in (".json", ".csv") and path.exists():
        if path.suffix.lower() == ".json":
            return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
        return {row["task"]: int(row["count"]) for row in rows}
    counts = {}
    for part in str(spec).split(","):
        if part.strip():
            task, _, value = part.rpartition("=")
            if not task:
                raise ValueError(f"counts: expected task=n, got {part!r}")
            counts[task.strip()] = int(value)
    return counts


def leaderboard_from_table(path: str | Path, *, counts: dict[str, int] | None = None,
                           prices: dict[str, float] | None = None, models: Sequence[str] | None = None) -> Leaderboard:
    """Leaderboard from an aggregate table: one row per model, one accuracy column per task (e.g. DevOps-Eval's
    `ModelName,plan,code,...,AVG`, in percent).

    An average column (AVG, average, ...) is not a task. Per-task counts come from `counts`, or from a row whose
    model cell is `count`/`n`; they weight eq. 8 (the published AVG is count-weighted). Without counts every task
    weighs the same and `task_counts` stays empty, so a reader can tell.
    """
    path = Path(path)
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header and at least one model row")
    header = [h.strip() for h in rows[0]]
    model_col = next((i for i, h in enumerate(header) if h.lower() in MODEL_COLUMNS), 0)
    task_cols = [i for i, h in enumerate(header) if i != model_col and h.lower() not in AVERAGE_COLUMNS]
    tasks = [header[i] for i in task_cols]
    counts = dict(counts or {})
    table: dict[str, dict[str, float]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        name = row[model_col].strip()
        values = {}
        for i in task_cols:
            cell = row[i].strip() if i < len(row) else ""
            if cell in ("", "-", "NA"):
                continue
            try:
                values[header[i]] = float(cell.rstrip("%"))
            except ValueError:
                raise ValueError(f"{path}:{number}: column {header[i]!r}: not a number: {cell!r}") from None
        if name.lower() in COUNT_ROWS:
            counts = {**{t: int(v) for t, v in values.items()}, **counts}
        else:
            table[name] = values
    unknown = [t for t in counts if t not in tasks]
    if unknown:
        raise ValueError(f"counts for tasks not in {path}: {unknown} (tasks: {tasks})")
    percent = any(v > 1.0 for values in table.values() for v in values.values())
    scale = 100.0 if percent else 1.0
    names = list(models) if models else list(table)
    missing_models = [m for m in names if m not in table]
    if missing_models:
        raise ValueError(f"unknown model(s) {missing_models}; {path} has {list(table)}")
    accuracy = {t: {m: table[m][t] / scale for m in names if t in table[m]} for t in tasks}
    weights = {t: counts.get(t, 1 if not counts else 0) for t in tasks}
    if counts and any(w == 0 for w in weights.values()):
        raise ValueError(f"counts missing for task(s) {[t for t, w in weights.items() if w == 0]}")
    overall, overall_count = {}, {}
    for m in names:
        have = [t for t in tasks if m in accuracy[t]]
        total = sum(weights[t] for t in have)
        if total:
            overall[m] = sum(accuracy[t][m] * weights[t] for t in have) / total
        overall_count[m] = total if counts else 0
    count = {t: {m: (counts.get(t, 0) if m in accuracy[t] else 0) for m in names} for t in tasks}
    return _assemble(str(path), "table", names, tasks, {t: counts[t] for t in tasks if t in counts},
                     accuracy, count, overall, overall_count, prices or {})


def write_leaderboard(leaderboard: Leaderboard, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(leaderboard.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_leaderboard(path: str | Path) -> Leaderboard:
    return Leaderboard.model_validate_json(Path(path).read_text(encoding="utf-8"))


def format_leaderboard(leaderboard: Leaderboard, top: int = 3) -> str:
    """A plain-text summary: best expert per task with its accuracy and the runners-up."""
    width = max(len(t) for t in leaderboard.tasks + ["(best average)"])
    lines = []
    for task in leaderboard.tasks:
        ranked = leaderboard.ranking[task][:top]
        cells = ", ".join(f"{m} {100 * leaderboard.accuracy[task].get(m, float('nan')):.1f}" for m in ranked)
        n = leaderboard.task_counts.get(task)
        lines.append(f"{task:<{width}}  {cells}" + (f"  (n={n})" if n else ""))
    best = leaderboard.best_average
    lines.append(f"{'(best average)':<{width}}  {best} {100 * leaderboard.overall_accuracy[best]:.1f}")
    return "\n".join(lines)
