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
    Similarities are rounded to 1e-5 and ties go to the lower index, so one query and the same query in a batch
    (whose matrix product differs in the last float bits) get the same neighbours: the live router (which scans
    one query with faiss below the HNSW size, retrieval/memory_index.py) and its replayed evaluation pick alike.
    """
    k = min(k, index.shape[0] - (1 if exclude is not None else 0))
    if k <= 0:
        empty = np.zeros((queries.shape[0], 0))
        return empty.astype(int), empty
    all_idx = np.empty((queries.shape[0], k), dtype=np.int64)
    all_sim = np.empty((queries.shape[0], k), dtype=np.float32)
    for start in range(0, queries.shape[0], batch_size):
        sims = similarities(queries[start : start + batch_size], index)
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            hide = exclude[start : start + batch_size]
            sims[rows[hide >= 0], hide[hide >= 0]] = -np.inf
        sims = np.round(sims, 5)
        part = _top_k_rows(sims, k)
        all_idx[start : start + batch_size] = part
        all_sim[start : start + batch_size] = np.take_along_axis(sims, part, axis=1)
    return all_idx, all_sim


def similarities(queries: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`queries @ index.T`, one query (the example store's, the memory index's re-scoring) on the calling thread.

    A matrix-vector `@` goes to OpenBLAS, which splits it over two threads; waking the second one stalled 14% of
    the knn router's scans by 5-8 ms on a 2-core machine (6,679 rows: 1.19 ms a scan on average, 0.62 ms with
    einsum, docs/PERFORMANCE.md). From two queries on, BLAS' matrix product is the faster one (replay, tuning).
    """
    if queries.shape[0] == 1:
        return np.einsum("qd,nd->qn", queries, index)
    return queries @ index.T


def _top_k_rows(sims: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, best first, ties broken by the lower index."""
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sims, part, axis=1).min(axis=1)
    tied = np.flatnonzero((sims >= kth[:, None]).sum(axis=1) > k)
    for row in tied:  # rare: equal similarities straddle the k-th place
        candidates = np.flatnonzero(sims[row] >= kth[row])
        part[row] = candidates[np.lexsort((candidates, -sims[row, candidates]))[:k]]
    values = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -values), axis=1) if part.size else part
    return np.take_along_axis(part, order, axis=1)
