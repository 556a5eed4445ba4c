"""The knn memory's index: HNSW above the exact-scan size returns what the exact scan returns (here, on clustered
vectors), sees rows appended after it was built, and is read back from its on-disk cache on a restart."""

from __future__ import annotations

import numpy as np

from coe_router.retrieval.memory_index import MemoryIndex
from coe_router.retrieval.neighbours import top_k
from coe_router.routing.query_router import KnnRouter


def _vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    points = centres[rng.integers(0, 20, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_finds_the_exact_neighbours_and_ranks_them_the_same_way(tmp_path):
    vectors, queries = _vectors(3000), _vectors(40, seed=1)
    index = MemoryIndex(vectors, exact_max_rows=1000, cache_dir=tmp_path)
    assert index.approximate
    idx, sims = index.search(queries, 20)
    exact_idx, exact_sims = top_k(queries, vectors, 20)
    assert (idx == exact_idx).mean() > 0.99
    assert np.allclose(np.sort(sims, axis=1), np.sort(exact_sims, axis=1), atol=1e-4)
    assert (np.diff(sims, axis=1) <= 0).all()  # best first


def test_one_query_below_the_hnsw_size_gets_the_numpy_scans_neighbours(monkeypatch):
    """The flat scan (the live router's path) against numpy's scan of every row: the same rows in the same order,
    similarities within the 1e-5 rounding, on clustered vectors; on a memory of 100 copies per row, where the tie
    at the k-th place runs past the candidates, the check sends the query to numpy's scan, so rows are identical."""
    from coe_router.retrieval import memory_index

    plain = _vectors(4000)
    duplicated = np.repeat(_vectors(40, seed=5), 100, axis=0)
    fell_back = []
    flat_search = memory_index.MemoryIndex._flat_search

    def counted(self, query, k):
        found = flat_search(self, query, k)
        fell_back.append(found is None)
        return found

    monkeypatch.setattr(memory_index.MemoryIndex, "_flat_search", counted)
    for vectors, k in ((plain, 20), (duplicated, 5)):
        index = MemoryIndex(vectors)
        assert not index.approximate
        same_rows = []
        for query in _vectors(100, seed=9):
            idx, sims = index.search(query[None, :], k)
            exact_idx, exact_sims = top_k(query[None, :], vectors, k)
            same_rows.append((idx == exact_idx).all())
            assert np.abs(sims - exact_sims).max() <= 1.01e-5 and (np.diff(sims[0]) <= 0).all()
        assert np.mean(same_rows) >= (0.97 if vectors is plain else 1.0)
    assert 0 < sum(fell_back) < len(fell_back)  # both paths ran


def test_rows_appended_after_the_build_are_found(tmp_path):
    vectors = _vectors(2000)
    index = MemoryIndex(vectors, exact_max_rows=1000, cache_dir=tmp_path)
    query = _vectors(1, seed=7)
    grown = index.extended(np.vstack([vectors, query]))  # served feedback on exactly this query
    idx, sims = grown.search(query, 5)
    assert grown.graph is index.graph and idx[0, 0] == 2000 and sims[0, 0] > 0.999


def test_a_restart_reads_the_graph_back_from_the_cache(tmp_path):
    vectors = _vectors(2000)
    MemoryIndex(vectors, exact_max_rows=1000, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.faiss")
    stamp = cached.stat().st_mtime_ns
    again = MemoryIndex(vectors, exact_max_rows=1000, cache_dir=tmp_path)
    assert again.graph.index.ntotal == 2000 and cached.stat().st_mtime_ns == stamp
    cached.write_bytes(b"torn")  # a damaged file is rebuilt, not trusted
    rebuilt = MemoryIndex(vectors, exact_max_rows=1000, cache_dir=tmp_path)
    assert rebuilt.graph.index.ntotal == 2000


def test_the_knn_router_picks_the_same_models_through_either_index(tmp_path, monkeypatch):
    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    vectors = _vectors(3000)
    rng = np.random.default_rng(3)
    scores = (rng.random((3000, 4)) < np.array([0.3, 0.5, 0.6, 0.4])).astype(float)
    tasks = [f"t{i % 5}" for i in range(3000)]
    queries = _vectors(60, seed=2)
    exact = KnnRouter(["a", "b", "c", "d"], vectors, scores, tasks, exact_max_rows=10_000)
    approximate = KnnRouter(["a", "b", "c", "d"], vectors, scores, tasks, exact_max_rows=1000)
    assert approximate.memory.index.approximate and not exact.memory.index.approximate
    assert (exact.route(queries) == approximate.route(queries)).mean() >= 0.95
