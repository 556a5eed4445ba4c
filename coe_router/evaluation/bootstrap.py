"""Paired bootstrap intervals for the difference between two routers scored on the same test questions.

Both routers answered every test question, so the questions are resampled with replacement and the difference
of the two means is recomputed on each resample (the pairing removes the question-difficulty variance that two
independent intervals would double count). The interval is the 2.5th-97.5th percentile of those differences;
an interval that excludes 0 says the difference is unlikely to be an accident of which questions were drawn.
Seeded: the same data gives the same interval.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

BOOTSTRAP_SAMPLES = 2000
"""Resamples per interval (the 2.5% tails then rest on 50 resamples each)."""


class Interval(BaseModel):
    """`a` minus `b` in percentage points (or cost units), with its 95% paired bootstrap interval."""

    a: str
    b: str
    difference: float
    low: float
    high: float
    samples: int = Field(description="bootstrap resamples")

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 2) -> str:
        return f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b"), scale: float = 100.0,
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95) -> Interval:
    """mean(a) - mean(b) x scale with a percentile interval; `a` and `b` are per-question values (same order)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired bootstrap needs two equal-length, non-empty vectors, got {a.shape} and {b.shape}")
    diff = (a - b) * scale
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 256):  # bounded memory on large test sets
        rows = rng.integers(len(diff), size=(min(256, samples - start), len(diff)))
        means[start : start + len(rows)] = diff[rows].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(a=names[0], b=names[1], difference=round(float(diff.mean()), 4), low=round(float(low), 4),
                    high=round(float(high), 4), samples=samples)
