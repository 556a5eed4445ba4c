"""Routing overhead per query (retriever + classifier + router, no expert) against the floor: one query embedding."""

from __future__ import annotations

import numpy as np

from coe_router.schema import RetrievedExample

from .common import Data, make_router, now, p50, quiet_gc, summary


class LegacyStore:
    """The retriever's search as it was before this benchmark (for a same-run before/after row):
    SentenceTransformer.encode for the query, then collection.count() and a Chroma query on every search."""

    def __init__(self, collection, encoder):
        self.collection = collection
        self.encoder = encoder

    def search(self, query: str, k: int):
        vector = self.encoder.encode_with_sentence_transformers([query])[0]
        if k <= 0 or self.collection.count() == 0:
            return []
        found = self.collection.query(query_embeddings=[list(map(float, vector))], n_results=k,
                                      include=["documents", "metadatas", "distances"])
        return [
            RetrievedExample(id=i, question=doc, task=str(meta["task"]), score=round(1.0 - float(dist), 6))
            for i, doc, meta, dist in zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0])
        ]


def floor_and_knn(data: Data, encoder, store, legacy_store, knn, pool, k: int, n: int) -> dict:
    """Per query, in rotating order so load drifts hit every column alike (the LRU is cleared before each):
    the floor (one embedding), knn routing, the pre-optimisation knn routing, and sentence-transformers' encode."""
    route = make_router(store, knn, pool, k)
    legacy = make_router(legacy_store, knn, pool, k)
    queries = [data.questions[i] for i in data.test[:n]]
    for q in queries[:5]:  # warm-up
        encoder.encode_uncached([q.text]), route(q.text), legacy(q.text)
    cols = {"floor": [], "knn": [], "knn_legacy": [], "st_encode": []}
    correct = 0
    fns = {
        "floor": lambda text: encoder.encode_uncached([text]),
        "knn": route,
        "knn_legacy": legacy,
        "st_encode": lambda text: encoder.encode_with_sentence_transformers([text]),
    }
    names = list(fns)
    with quiet_gc():
        for i, q in enumerate(queries):
            for j in range(len(names)):
                name = names[(i + j) % len(names)]
                encoder.cache.clear()
                start = now()
                result = fns[name](q.text)
                cols[name].append(now() - start)
                if name == "knn":
                    correct += result.task == q.task
    # A repeated query: the second routing of the same text is served by the LRU.
    repeated = []
    with quiet_gc():
        for q in queries[: min(100, len(queries))]:
            encoder.cache.clear()
            route(q.text)
            start = now()
            route(q.text)
            repeated.append(now() - start)
    floor = np.asarray(cols["floor"])
    out = {name: summary(values) for name, values in cols.items()}
    out["knn_repeated"] = summary(repeated)
    for name in ("knn", "knn_legacy", "st_encode"):
        out[name]["ratio_to_floor_p50"] = round(p50(cols[name]) / p50(floor), 3)
        out[name]["median_paired_ratio"] = round(float(np.median(np.asarray(cols[name]) / floor)), 3)
    out["knn_repeated"]["ratio_to_floor_p50"] = round(p50(repeated) / p50(floor), 3)
    out["knn"]["accuracy"] = round(correct / len(queries), 4)
    return out


def hot_path_costs(data: Data, store, collection, knn, pool, k: int, n: int) -> dict:
    """The pieces after the embedding, each on its own, from precomputed query vectors."""
    vectors = data.vectors[data.test[:n]]
    store.search_vector(vectors[0], k)
    retrieved = [store.search_vector(v, k) for v in vectors]
    cols = {"count": [], "chroma_query": [], "store_search": [], "classify_route": []}
    with quiet_gc():
        for v, found in zip(vectors, retrieved):
            start = now(); collection.count(); cols["count"].append(now() - start)
            start = now()
            collection.query(query_embeddings=[list(map(float, v))], n_results=k,
                             include=["documents", "metadatas", "distances"])
            cols["chroma_query"].append(now() - start)
            start = now(); store.search_vector(v, k); cols["store_search"].append(now() - start)
            start = now()
            pool.task_map.route(knn("", None, found).task)  # the public classifier and task map
            cols["classify_route"].append(now() - start)
    return {name: summary(values) for name, values in cols.items()}


def classifier_rows(data: Data, encoder, store, classifiers: dict, pool, k: int, sizes: dict,
                    floor_p50_ms: float) -> dict:
    """Routing with the hybrid and the llm classifier (SmolLM2 on llama.cpp): fewer queries, they are slow."""
    out = {}
    for name, classifier in classifiers.items():
        n = sizes.get(name, 0)
        if n <= 0:
            continue
        route = make_router(store, classifier, pool, k)
        queries = [data.questions[i] for i in data.test[:n]]
        route(queries[-1].text)  # warm-up (loads the prompt prefix into llama.cpp's cache)
        times, correct, by_llm = [], 0, 0
        for q in queries:
            encoder.cache.clear()
            start = now()
            decision = route(q.text)
            times.append(now() - start)
            correct += decision.task == q.task
            by_llm += decision.classifier in ("llm", "hybrid:llm")
        row = summary(times)
        row["ratio_to_floor_p50"] = round(row["p50_ms"] / floor_p50_ms, 2)
        row["accuracy"] = round(correct / n, 4)
        row["share_llm"] = round(by_llm / n, 3)
        out[name] = row
    return out


def graph_overhead(data: Data, encoder, graph, route, n: int) -> dict:
    """A full graph run with an instant fake expert minus the routing functions alone, paired per query."""
    queries = [data.questions[i].text for i in data.test[:n]]
    for text in queries[:3]:
        graph.invoke({"query": text}), route(text)
    full, alone = [], []
    with quiet_gc():
        for i, text in enumerate(queries):
            order = ("graph", "route") if i % 2 == 0 else ("route", "graph")
            for what in order:
                encoder.cache.clear()
                start = now()
                graph.invoke({"query": text}) if what == "graph" else route(text)
                (full if what == "graph" else alone).append(now() - start)
    full_a, alone_a = np.asarray(full), np.asarray(alone)
    return {
        "graph": summary(full), "routing": summary(alone),
        "overhead_p50_ms": round((p50(full_a) - p50(alone_a)) * 1000, 3),
        "overhead_median_paired_ms": round(float(np.median(full_a - alone_a)) * 1000, 3),
    }
