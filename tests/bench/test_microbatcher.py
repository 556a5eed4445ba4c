"""The benchmark's asyncio micro-batcher: every caller gets its own, correct vector (no timing assertions)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bench.microbatcher import MicroBatcher
from coe_router.retrieval.lru import EmbeddingLRU
from tests.fakes import BagOfWordsEncoder, RecordingEncoder

TEXTS = [f"question number {i} about topic {i % 5}" for i in range(40)]
REFERENCE = BagOfWordsEncoder()


def expected(text: str) -> np.ndarray:
    return REFERENCE.encode([text])[0]


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


