"""DevOps-Eval: task -> expert maps from the published aggregate leaderboards (the question files are not in the
data, so nothing is replayed per question)."""

from __future__ import annotations

import csv
from pathlib import Path

from coe_router.evaluation.leaderboard import leaderboard_from_table
from reports.tables import table


def devops_counts(subcategories: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Per-task test counts (per language) of the DevOps (by lifecycle stage) and AIOps leaderboards, from the
    sub-category list; the leaderboard spells LogParser as LogParsing."""
    devops: dict[str, int] = {}
    aiops: dict[str, int] = {}
    with subcategories.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            count = int(row["test_per_language"])
            if "AIOps" in row["supercategory"]:
                aiops["LogParsing" if row["name"] == "LogParser" else row["name"]] = count
            if row["supercategory"] != "OPERATE/AIOps":
                stage = row["supercategory"].split("/")[0].lower()
                devops[stage] = devops.get(stage, 0) + count
    return devops, aiops


def devops_section(data: Path) -> str:
    folder = data / "devops-eval"
    devops_counts_, aiops_counts = devops_counts(folder / "subcategories.csv")
    rows = []
    for name, counts in (("devops_zero_shot", devops_counts_), ("devops_five_shot", devops_counts_),
                         ("aiops_zero_shot", aiops_counts), ("aiops_one_shot", aiops_counts)):
        path = folder / f"leaderboard_{name}.csv"
        board = leaderboard_from_table(path, counts=counts)
        avg = _avg_column(path)
        computed = {m: 100 * board.overall_accuracy[m] for m in board.models}
        matches = [m for m in board.models if abs(computed[m] - avg[m]) <= 0.011]
        # A published AVG that equals another row's computed average was moved with the wrong row.
        swapped = [m for m in board.models if m not in matches
                   and any(abs(computed[o] - avg[m]) <= 0.011 for o in board.models if o != m)]
        check = f"{len(matches)} of {len(board.models)}" + (f" ({', '.join(swapped)}: AVG of another row)" if swapped else "")
        total = sum(board.task_counts.values())
        category = sum(board.task_counts[t] * board.accuracy[t][board.best[t]] for t in board.tasks) / total
        best = board.best_average
        experts = sorted(set(board.best.values()))
        rows.append([name, f"{best} {100 * board.overall_accuracy[best]:.2f}", f"{100 * category:.2f}",
                     f"{100 * (category - board.overall_accuracy[best]):+.2f}", ", ".join(experts), check])
    return "\n".join([
        "## DevOps-Eval: task -> expert maps from the published leaderboards (aggregate tables)",
        "",
        ("The question files are not in the data (only model x category accuracy tables), so nothing can be replayed "
        "per question; `coe leaderboard build --table` still gives the task map, and the category router's accuracy "
        "follows from the table: sum over tasks of n_t x best accuracy_t / N. Counts per task come from "
        "`subcategories.csv` (per language); the last column counts the models whose published AVG the count-weighted "
        "average reproduces to 0.01 points (the rest carry the AVG of a neighbouring row: a transcription slip in "
        "the published table, so eq. 8 is computed from the per-task columns, not read from AVG)."),
        "",
        table(["leaderboard", "best average (eq. 8) %", "category router %", "gain", "experts used", "published AVG reproduced"], rows),
        "",
    ])


def _avg_column(path: Path) -> dict[str, float]:
    with path.open(encoding="utf-8") as handle:
        return {row["ModelName"]: float(row["AVG"]) for row in csv.DictReader(handle)}
