"""A side-by-side peer: aurelio-labs' `semantic-router` on the same model, index, queries and labels.

Routes are the 14 categories, their utterances the same train questions our index holds, and its encoder is its
own `LocalEncoder` (sentence-transformers) loaded from the same MiniLM folder. To keep the run short the peer's
`LocalIndex` is filled with the utterances' vectors from our cache (the same model: they equal what its encoder
computes to within 2e-7) through the index's own `add()`; `--peer-self-index` makes it encode them itself.
Queries go through `router(query)`, the peer's documented synchronous call, which embeds with its own encoder.
"""

from __future__ import annotations

import numpy as np

from .common import Data, make_router, now, p50, quiet_gc, summary


def peer_available() -> tuple[bool, str]:
    try:
        import semantic_router  # noqa: F401
        from semantic_router.encoders import LocalEncoder  # noqa: F401
        from semantic_router.routers import IndexedRouter  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip with its reason
        return False, f"semantic-router is not importable ({type(exc).__name__}: {exc}); pip install semantic-router"
    from importlib.metadata import version

    return True, version("semantic-router")


def build_peer(data: Data, model_path, top_k: int, self_index: bool = False):
    from semantic_router import Route
    from semantic_router.encoders import LocalEncoder
    from semantic_router.index import LocalIndex
    from semantic_router.routers import IndexedRouter

    encoder = LocalEncoder(name=str(model_path), device="cpu")
    rows = data.index_rows
    routes: dict[str, list[str]] = {}
    for i in rows:
        routes.setdefault(data.questions[i].task, []).append(data.questions[i].text)
    start = now()
    if self_index:
        router = IndexedRouter(encoder=encoder, routes=[Route(name=t, utterances=u) for t, u in routes.items()],
                               top_k=top_k)
    else:
        index = LocalIndex()
        index.add(embeddings=data.vectors[rows].tolist(), routes=[data.questions[i].task for i in rows],
                  utterances=[data.questions[i].text for i in rows], metadata_list=[{} for _ in rows])
        router = IndexedRouter(encoder=encoder, index=index, top_k=top_k)
    build_s = now() - start
    return router, build_s


def compare(data: Data, encoder, store, knn, pool, k: int, n: int, model_path, self_index: bool = False) -> dict:
    ok, info = peer_available()
    if not ok:
        return {"skipped": info}
    from semantic_router.routers import IndexedRouter

    peer, build_s = build_peer(data, model_path, k, self_index)
    route = make_router(store, knn, pool, k)
    queries = [data.questions[i] for i in data.test[:n]]
    for q in queries[:5]:
        peer(q.text), route(q.text)
    # Alternate in blocks, not per query: each system runs torch from its own threads (the peer embeds in a worker
    # thread of its background loop), and OpenMP threads left spinning by one call slow the other's next call.
    # The first query of every block is a warm-up and is not counted. Both see the same queries.
    ours_t, peer_t, ours_ok, peer_ok = [], [], 0, 0
    block = 25
    with quiet_gc():
        for b, start_at in enumerate(range(0, len(queries), block)):
            chunk = queries[start_at : start_at + block]
            for what in (("ours", "peer") if b % 2 == 0 else ("peer", "ours")):
                for j, q in enumerate([chunk[0], *chunk]):
                    encoder.cache.clear()
                    if what == "ours":
                        start = now(); decision = route(q.text); elapsed = now() - start
                        if j:
                            ours_t.append(elapsed)
                            ours_ok += decision.task == q.task
                    else:
                        start = now(); choice = peer(q.text); elapsed = now() - start
                        if j:
                            peer_t.append(elapsed)
                            peer_ok += getattr(choice, "name", None) == q.task
    # The peer with sum aggregation (its closest setting to our similarity-weighted vote): accuracy only.
    summed = IndexedRouter(encoder=peer.encoder, index=peer.index, top_k=k, aggregation="sum")
    sum_accuracy = summed.evaluate([q.text for q in queries], [q.task for q in queries])
    ours, theirs = np.asarray(ours_t), np.asarray(peer_t)
    return {
        "version": info,
        "peer_build_s": round(build_s, 2),
        "peer_index": "self-encoded" if self_index else "prefilled with the same MiniLM vectors",
        "ours_knn": {**summary(ours_t), "accuracy": round(ours_ok / n, 4)},
        "peer_default": {**summary(peer_t), "accuracy": round(peer_ok / n, 4),
                         "settings": f"IndexedRouter(LocalEncoder, LocalIndex, top_k={k}, aggregation='mean')"},
        "peer_sum_accuracy": round(float(sum_accuracy), 4),
        "latency_ratio_peer_over_ours_p50": round(p50(theirs) / p50(ours), 2),
        "median_paired_ratio": round(float(np.median(theirs / ours)), 2),  # same query, same block pair
        "accuracy_ratio_ours_over_peer": round((ours_ok / n) / max(peer_ok / n, 1e-9), 3),
    }
