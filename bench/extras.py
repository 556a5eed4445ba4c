"""Leaderboard build time on the MMLU-Pro outcomes, and the embedded default's peak memory in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from .common import DATA, REPO, now


def leaderboard_time(repeats: int = 5) -> dict:
    correctness, questions = DATA / "correctness.csv", DATA / "questions.jsonl"
    try:
        from coe_router.evaluation.leaderboard import build_leaderboard
        from coe_router.outcomes import read_outcomes
    except ImportError as exc:
        return {**_numpy_leaderboard(correctness, repeats), "note": f"coe_router.evaluation.leaderboard unavailable ({exc})"}
    read_t, build_t = [], []
    for _ in range(repeats):
        start = now(); outcomes = read_outcomes(correctness, questions); read_t.append(now() - start)
        start = now(); board = build_leaderboard(outcomes); build_t.append(now() - start)
    return {"source": "coe_router.evaluation.leaderboard.build_leaderboard", "questions": int(outcomes.n),
            "models": len(outcomes.models), "tasks": len(board.ranking),
            "read_ms_p50": round(float(np.median(read_t)) * 1000, 1),
            "build_ms_p50": round(float(np.median(build_t)) * 1000, 1)}


def _numpy_leaderboard(correctness, repeats: int) -> dict:
    """Fallback: per-category / per-model accuracy with plain numpy (marked as such in the report)."""
    import csv

    build_t = []
    with open(correctness, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, rows = rows[0], rows[1:]
    categories = np.array([r[1] for r in rows], dtype=object)
    scores = np.array([[float(v) if v != "" else np.nan for v in r[2:]] for r in rows])
    for _ in range(repeats):
        start = now()
        {c: np.nanmean(scores[categories == c], axis=0) for c in set(categories.tolist())}
        build_t.append(now() - start)
    return {"source": "plain numpy per-category accuracy (fallback)", "questions": len(rows),
            "models": len(header) - 2, "build_ms_p50": round(float(np.median(build_t)) * 1000, 1)}


def embedded_default_rss(timeout_s: int = 600) -> dict:
    """`build_graph()` (configs/local.yaml) plus one question, in a fresh process: peak RSS and timings."""
    try:
        done = subprocess.run([sys.executable, "-m", "bench.rss"], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout_s}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"skipped": f"exit {done.returncode}: {(done.stderr or done.stdout)[-400:]}"}
