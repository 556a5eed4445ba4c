"""Top-k latency as the example index grows: 1k, 10k, 100k examples, exact numpy search against Chroma's HNSW.

Up to the 5,865 real train questions are real; beyond that, examples are synthesised from them: each synthetic
vector is normalise(0.7 * a + 0.3 * b + noise), a and b two real train questions of the same category (label:
a's), noise N(0, 0.01^2) per dimension. Synthetic points therefore lie among the real ones, not on top of them.
Queries are the test questions' vectors (never in the index).
"""

from __future__ import annotations

import numpy as np

from coe_router.retrieval.store import ExampleStore, _Mirror

from .common import Data, now, quiet_gc, summary


def _client():
    """The same in-memory Chroma client chroma_collection(name, None) uses (telemetry off)."""
    import chromadb
    from chromadb.config import Settings

    return chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))


def synthesise(data: Data, size: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    base = data.train
    if size <= len(base):
        rows = np.sort(rng.permutation(base)[:size])
        return (data.vectors[rows], [data.questions[i].id for i in rows],
                [data.questions[i].text for i in rows], [data.questions[i].task for i in rows])
    extra = size - len(base)
    tasks = np.array([data.questions[i].task for i in base], dtype=object)
    by_task = {task: base[tasks == task] for task in set(tasks.tolist())}
    a = rng.choice(base, size=extra)
    b = np.array([rng.choice(by_task[data.questions[i].task]) for i in a])
    synth = 0.7 * data.vectors[a] + 0.3 * data.vectors[b] + rng.normal(0, 0.01, size=(extra, data.vectors.shape[1]))
    synth = (synth / np.linalg.norm(synth, axis=1, keepdims=True)).astype(np.float32)
    vectors = np.concatenate([data.vectors[base], synth])
    ids = [data.questions[i].id for i in base] + [f"synthetic-{n}" for n in range(extra)]
    texts = [data.questions[i].text for i in base] + [data.questions[i].text for i in a]
    labels = [data.questions[i].task for i in base] + [data.questions[i].task for i in a]
    return vectors, ids, texts, labels


def scaling(data: Data, encoder, sizes: list[int], n_queries: int, k: int = 5, chroma: bool = True) -> dict:
    queries = data.vectors[data.test[:n_queries]]
    out = {}
    for size in sizes:
        vectors, ids, texts, labels = synthesise(data, size)
        mirror = _Mirror(np.ascontiguousarray(vectors), ids, texts, labels)
        row: dict = {"examples": size}
        store = None
        if chroma:
            client = _client()
            collection = client.get_or_create_collection(name=f"bench-scaling-{size}", embedding_function=None,
                                                         metadata={"hnsw:space": "cosine"})
            start = now()
            for s in range(0, size, 5000):
                collection.upsert(ids=ids[s : s + 5000], embeddings=vectors[s : s + 5000],
                                  documents=texts[s : s + 5000], metadatas=[{"task": t} for t in labels[s : s + 5000]])
            row["chroma_build_s"] = round(now() - start, 1)
            store = ExampleStore(collection, encoder, exact_limit=0)  # Chroma's HNSW on every search
            store.search_vector(queries[0], k)
        ExampleStore._search_mirror(mirror, queries[0], k)
        exact_t, hnsw_t, recall = [], [], []
        with quiet_gc():
            for i, q in enumerate(queries):
                order = ("exact", "hnsw") if i % 2 == 0 else ("hnsw", "exact")
                for what in order:
                    if what == "exact":
                        start = now(); exact = ExampleStore._search_mirror(mirror, q, k); exact_t.append(now() - start)
                    elif store is not None:
                        start = now(); approx = store.search_vector(q, k); hnsw_t.append(now() - start)
                if store is not None:
                    recall.append(len({e.id for e in exact} & {e.id for e in approx}) / k)
        row["exact_numpy"] = summary(exact_t)
        if store is not None:
            row["chroma_hnsw"] = summary(hnsw_t)
            row["chroma_recall_at_k"] = round(float(np.mean(recall)), 4)
            client.delete_collection(collection.name)
        # What ExampleStore does at this size: exact in memory up to exact_limit, Chroma's HNSW above.
        row["store_default"] = "exact_numpy" if size <= ExampleStore.DEFAULT_EXACT_LIMIT else "chroma_hnsw"
        measured = row.get(row["store_default"])  # None: HNSW not built at this size (--quick)
        row["store_default_p50_ms"] = measured["p50_ms"] if measured else None
        out[str(size)] = row
        del mirror, vectors
    return out
