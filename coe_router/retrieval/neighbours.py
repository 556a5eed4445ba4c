"""Exact top-k cosine neighbours with numpy, in batches.

Evaluating thousands of questions one Chroma query at a time costs minutes; one matrix product per batch costs
milliseconds and returns exactly what the cosine-space Chroma collection would (unit vectors: dot = cosine).
"""

from __future__ import annotations

import numpy as np


def top_k(queries: np.ndarray, index: np.ndarray, k: int, *, batch_size: int = 1024,
          exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities), each (n_queries, k), best first.

    `exclude[i]` is an index row to hide from query i (leave-one-out on the training set itself); -1 hides none.
    """
    k = min(k, index.shape[0] - (1 if exclude is not None else 0))
    if k <= 0:
        empty = np.zeros((queries.shape[0], 0))
        return empty.astype(int), empty
    all_idx = np.empty((queries.shape[0], k), dtype=np.int64)
    all_sim = np.empty((queries.shape[0], k), dtype=np.float32)
    for start in range(0, queries.shape[0], batch_size):
        sims = queries[start : start + batch_size] @ index.T
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            hide = exclude[start : start + batch_size]
            sims[rows[hide >= 0], hide[hide >= 0]] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        all_idx[start : start + batch_size] = np.take_along_axis(part, order, axis=1)
        all_sim[start : start + batch_size] = np.take_along_axis(part_sims, order, axis=1)
    return all_idx, all_sim
