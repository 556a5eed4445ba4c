"""Deterministic, category-stratified train/test splits of recorded outcomes.

A router's task map and its kNN memory are built from train; every figure in the results is measured on test.
The split depends only on (ids, categories, texts, seed, fraction), not on file order, so anyone regenerating
the results gets the same questions on each side.

Questions whose texts are the same after normalisation (case and whitespace) stay on one side: a router that
embeds the text would otherwise find a test question's twin in its training memory (similarity 1) and look
better than it is. Such a group is placed as a unit, with the category of its member with the smallest id.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from coe_router.outcomes import Outcomes, write_outcomes


def _stable_seed(seed: int, category: str) -> int:
    """One RNG stream per category, so adding a category does not reshuffle the others."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{category}".encode()).digest()[:8], "little")


def normalize_text(text: str) -> str:
    return " ".join(text.lower().split())


def duplicate_groups(texts: Sequence[str] | None, n: int) -> np.ndarray:
    """Group number per row: rows with the same normalised non-empty text share one; others are alone."""
    if not texts:
        return np.arange(n)
    first: dict[str, int] = {}
    return np.array([first.setdefault(normalize_text(t), i) if t.strip() else i for i, t in enumerate(texts)])


def stratified_split(ids: list[str], categories: np.ndarray, test_fraction: float = 0.3, seed: int = 0,
                     texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test), each sorted. Per category, whole duplicate groups (see duplicate_groups) are
    drawn in a seeded order until round(fraction * size) test rows are reached (a group may overshoot by its
    size - 1); with no duplicates this is exactly round(fraction * size) rows per category."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    categories = np.asarray(categories, dtype=object)
    members: dict[int, list[int]] = {}
    for row, group in enumerate(duplicate_groups(texts, len(ids))):
        members.setdefault(int(group), []).append(row)
    units = sorted(((min(rows, key=lambda i: ids[i]), rows) for rows in members.values()), key=lambda u: ids[u[0]])
    test_rows: list[int] = []
    for category in sorted(set(categories.tolist())):
        mine = [rows for first, rows in units if categories[first] == category]
        target = int(round(test_fraction * sum(len(rows) for rows in mine)))
        taken = 0
        for position in np.random.default_rng(_stable_seed(seed, category)).permutation(len(mine)):
            if taken >= target:
                break
            test_rows.extend(mine[position])
            taken += len(mine[position])
    test = np.sort(np.array(test_rows, dtype=int))
    train = np.setdiff1d(np.arange(len(ids)), test)
    return train, test


def split_outcomes(outcomes: Outcomes, test_fraction: float = 0.3, seed: int = 0) -> tuple[Outcomes, Outcomes]:
    train, test = stratified_split(outcomes.ids, outcomes.categories, test_fraction, seed, outcomes.questions)
    return outcomes.take(train), outcomes.take(test)


def write_split(outcomes: Outcomes, out_dir: str | Path, test_fraction: float = 0.3, seed: int = 0) -> dict[str, Path]:
    """Write train/test questions.jsonl + correctness.csv under out_dir; returns the four paths."""
    out_dir = Path(out_dir)
    paths = {}
    for name, part in zip(("train", "test"), split_outcomes(outcomes, test_fraction, seed)):
        paths[f"{name}_questions"] = out_dir / f"{name}.questions.jsonl"
        paths[f"{name}_outcomes"] = out_dir / f"{name}.correctness.csv"
        write_outcomes(part, paths[f"{name}_questions"], paths[f"{name}_outcomes"])
    return paths
