"""Nearest memory rows for the knn router: an exact scan for small memories, an HNSW graph (faiss) for large.

An exact scan reads every row for every query: at 100,000 rows x 384 dimensions that is 150 MB per query, about
as long as the query embedding itself on two cores (docs/PERFORMANCE.md). Above `EXACT_MAX_ROWS` the memory is
searched with faiss' HNSW for `candidates` rows, which are then re-scored exactly and ranked by the same rule as
the exact scan (similarities rounded to 1e-5, ties to the lower row), so the approximate path differs from the
exact one only where HNSW missed a true neighbour.

One query below that size (the live router's) is scanned by faiss' flat inner-product kernel for its best
`FLAT_CANDIDATES` rows (at least 2k), ranked by the same rule. Its float32 products differ from numpy's in the
last bits only, as BLAS' batched ones (replay's) do, which the rounding absorbs; a query whose last candidate comes
within `EXACT_MARGIN` of the k-th best (a row left out could tie with it) is scanned by numpy instead. Right after
the query's forward pass, with the memory read back from RAM, faiss' kernel reads it faster than einsum
(docs/PERFORMANCE.md, "The knn router on a real memory").

Rows appended after the graph was built (served feedback) are scanned exactly beside it; the next start builds
one graph over everything. Built graphs are cached on disk by content (`HnswGraph`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from coe_router.cache import cache_root
from coe_router.retrieval.neighbours import _top_k_rows, similarities, top_k

EXACT_MAX_ROWS = 20_000
HNSW_NEIGHBOURS = 32  # M: graph degree
HNSW_BUILD_BREADTH = 64  # efConstruction
# Rows HNSW returns per query before the exact re-scoring (efSearch as well). On 100k MiniLM rows: recall@100
# 0.989 at 256 (0.8 ms a query), 0.995 at 512 (1.5 ms); an exact scan costs 10.4 ms.
MIN_CANDIDATES = 512
# Rows the flat scan of one query keeps before ranking, and how close its last one may come to the k-th best:
# faiss' and numpy's products of unit vectors differ by ~1e-7, similarities are rounded to 1e-5.
FLAT_CANDIDATES = 64
EXACT_MARGIN = 2e-5


class HnswGraph:
    """faiss IndexHNSWFlat (inner product, i.e. cosine on unit vectors) over the first `rows` memory rows.

    Building it takes about 13 s at 100k rows on two cores, so it is kept in `cache_dir` under a hash of the
    vectors and the build settings: a restart with the same memory reads it back (and searches the same graph:
    a multi-threaded build is not deterministic)."""

    def __init__(self, vectors: np.ndarray, cache_dir: Path | None = None):
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.rows = vectors.shape[0]
        key = hashlib.sha256(vectors.tobytes() + f"|{HNSW_NEIGHBOURS}|{HNSW_BUILD_BREADTH}".encode()).hexdigest()[:24]
        path = (cache_dir or default_cache_dir()) / f"{key}.faiss"
        if path.exists():
            try:
                self.index = faiss.read_index(str(path))
                if self.index.ntotal == self.rows:
                    return
            except RuntimeError:  # a torn or foreign file: build again
                pass
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = HNSW_BUILD_BREADTH
        self.index.add(vectors)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            faiss.write_index(self.index, str(partial))
            os.replace(partial, path)
        except (OSError, RuntimeError):  # a read-only cache only costs the next start a build
            pass

    def candidates(self, queries: np.ndarray, n: int) -> np.ndarray:
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(n, MIN_CANDIDATES))
        _, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n, params=params)
        return idx


def default_cache_dir() -> Path:
    """$COE_CACHE_DIR/knn-hnsw, default ~/.cache/coe-router/knn-hnsw."""
    return cache_root() / "knn-hnsw"


class MemoryIndex:
    """Top-k rows of `vectors` for each query (see module doc); immutable, so readers never see a half update."""

    def __init__(self, vectors: np.ndarray, *, exact_max_rows: int = EXACT_MAX_ROWS, graph: HnswGraph | None = None,
                 cache_dir: Path | None = None):
        self.vectors = vectors
        self.exact_max_rows = exact_max_rows
        if graph is None and vectors.shape[0] > exact_max_rows:
            graph = HnswGraph(vectors, cache_dir)
        self.graph = graph

    @property
    def approximate(self) -> bool:
        return self.graph is not None

    def extended(self, vectors: np.ndarray) -> "MemoryIndex":
        """The index of `vectors`, the same rows plus appended ones: the graph is kept, the new rows scanned."""
        return MemoryIndex(vectors, exact_max_rows=self.exact_max_rows, graph=self.graph)

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities), each (n_queries, k), best first; `exclude` (leave-one-out) scans exactly."""
        if self.graph is None and exclude is None and queries.shape[0] == 1:
            found = self._flat_search(queries, k)
            if found is not None:
                return found
        if self.graph is None or exclude is not None:
            return top_k(queries, self.vectors, k, exclude=exclude)
        k = min(k, self.vectors.shape[0])
        found = self.graph.candidates(queries, min(max(2 * k, MIN_CANDIDATES), self.graph.rows))
        tail = np.arange(self.graph.rows, self.vectors.shape[0])
        all_idx = np.empty((queries.shape[0], k), dtype=np.int64)
        all_sim = np.empty((queries.shape[0], k), dtype=np.float32)
        for row, query in enumerate(queries):
            rows = np.unique(np.concatenate([found[row][found[row] >= 0], tail]))  # ascending: ties to the lower
            sims = np.round(similarities(query[None, :], self.vectors[rows]), 5)
            best = _top_k_rows(sims, min(k, rows.shape[0]))[0]
            all_idx[row, : best.shape[0]], all_sim[row, : best.shape[0]] = rows[best], sims[0, best]
            if best.shape[0] < k:  # a graph that returned too few rows: scan this one query exactly
                all_idx[row], all_sim[row] = (part[0] for part in top_k(query[None, :], self.vectors, k))
        return all_idx, all_sim

    def _flat_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """One query's top-k through faiss' flat scan (module doc), or None when the tie check fails."""
        import faiss

        rows = self.vectors.shape[0]
        k = min(k, rows)
        n = min(max(2 * k, FLAT_CANDIDATES), rows)
        if k <= 0 or n >= rows or self.vectors.dtype != np.float32 or not self.vectors.flags.c_contiguous:
            return None  # small enough to scan whole, or faiss would copy the memory for every query
        scanned, found = faiss.knn(np.ascontiguousarray(query, dtype=np.float32), self.vectors, n,
                                   metric=faiss.METRIC_INNER_PRODUCT)
        sims = np.round(scanned[0], 5)
        best = np.lexsort((found[0], -sims))[:k]  # best first, ties to the lower row
        if scanned[0].min() + EXACT_MARGIN >= sims[best[-1]]:
            return None
        return found[0, best][None, :], sims[best][None, :]
