"""Deterministic, category-stratified train/test splits of recorded outcomes.

A router's task map and its kNN memory are built from train; every figure in the results is measured on test.
The split depends only on (ids, categories, seed, fraction), not on file order, so anyone regenerating the
results gets the same questions on each side.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from coe_router.evaluation.outcomes import Outcomes, write_outcomes


def _stable_seed(seed: int, category: str) -> int:
    """One RNG stream per category, so adding a category does not reshuffle the others."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{category}".encode()).digest()[:8], "little")


def stratified_split(ids: list[str], categories: np.ndarray, test_fraction: float = 0.3,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test), each sorted; every category contributes round(fraction * size) to test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    categories = np.asarray(categories, dtype=object)
    test_rows: list[int] = []
    for category in sorted(set(categories.tolist())):
        rows = np.flatnonzero(categories == category)
        rows = rows[np.argsort([ids[i] for i in rows], kind="stable")]
        shuffled = np.random.default_rng(_stable_seed(seed, category)).permutation(rows)
        test_rows.extend(shuffled[: int(round(test_fraction * len(rows)))].tolist())
    test = np.sort(np.array(test_rows, dtype=int))
    train = np.setdiff1d(np.arange(len(ids)), test)
    return train, test


def split_outcomes(outcomes: Outcomes, test_fraction: float = 0.3, seed: int = 0) -> tuple[Outcomes, Outcomes]:
    train, test = stratified_split(outcomes.ids, outcomes.categories, test_fraction, seed)
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
