"""Micro-batching of concurrent query embeddings: `BatchingEncoder`, an `Encoder` that many threads may call at once.

Drop it into `ExampleStore` / `build_graph(encoder=...)` (as `coe serve` does) and the graph's retriever nodes,
which LangGraph runs in worker threads under `ainvoke`, share encoder calls without any change to the nodes.

The policy is *natural batching with an adaptive linger*: at most `workers` encoder calls run at a time; requests
that arrive meanwhile form the next batch. A batch is sent as soon as an encoder slot is free, except that under
concurrent load (another batch is being encoded, or the previous batch held more than one request) the batcher
first lingers up to `max_wait_s` (default 2 ms) or until `max_batch` texts are waiting. A lone caller therefore
never waits for a linger. What batching gains on a small CPU is measured in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from coe_router.retrieval.encoder import Encoder
from coe_router.retrieval.lru import EmbeddingLRU, encode_through_cache


@dataclass
class BatchStats:
    """What a micro-batcher did: encoder calls, texts they encoded, requests served, largest batch."""

    batches: int = 0
    texts: int = 0
    requests: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.texts / self.batches if self.batches else 0.0

    def record(self, requests: int, texts: int) -> None:
        self.batches += 1
        self.requests += requests
        self.texts += texts
        self.largest = max(self.largest, texts)


def encode_unique(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Encode each distinct text once; returns the vectors and, per input text, its row."""
    rows: dict[str, int] = {}
    positions = [rows.setdefault(text, len(rows)) for text in texts]
    return np.asarray(encoder.encode(list(rows)), dtype=np.float32), positions


def check_settings(max_batch: int, max_wait_s: float, workers: int) -> None:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if max_wait_s < 0:
        raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")


class BatchingEncoder:
    """An `Encoder` that threads may call concurrently; their texts share `encoder.encode` calls.

    `workers` threads encode batches (at most that many encoder calls at once). A call with more than
    `max_batch` texts (bulk indexing) goes straight to the encoder, outside the batches. `close()` stops the
    workers; the encoder stays usable (calls then go straight through).
    """

    def __init__(self, encoder: Encoder, *, max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1,
                 cache: EmbeddingLRU | None = None):
        check_settings(max_batch, max_wait_s, workers)
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.cache = cache
        self.stats = BatchStats()
        self._queue: list[tuple[list[str], Future]] = []
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self._last_batch = 1
        self._inflight = 0
        self._workers = [threading.Thread(target=self._run, name=f"coe-batching-encoder-{n}", daemon=True)
                         for n in range(workers)]
        for worker in self._workers:
            worker.start()

    # The wrapped model, so on-disk embedding caches key on the model, not on this wrapper.
    @property
    def model(self):
        return getattr(self.encoder, "model", None)

    @property
    def model_id(self):
        return getattr(self.encoder, "model_id", None)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.asarray(self.encoder.encode(texts), dtype=np.float32)
        if self.cache is not None:
            return encode_through_cache(self._submit, texts, self.cache)
        return self._submit(texts)

    def _submit(self, texts: list[str]) -> np.ndarray:
        if len(texts) > self.max_batch or self._closed:
            return np.asarray(self.encoder.encode(texts), dtype=np.float32)
        future: Future = Future()
        with self._cond:
            if self._closed:
                return np.asarray(self.encoder.encode(texts), dtype=np.float32)
            self._queue.append((texts, future))
            self._queued_texts += len(texts)
            self._cond.notify()
        return future.result()

    def _take_batch(self) -> list[tuple[list[str], Future]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None  # closed and drained
            if (self._inflight > 0 or self._last_batch > 1) and self.max_wait_s > 0:
                deadline = time.monotonic() + self.max_wait_s
                while self._queued_texts < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_batch):
                texts, future = self._queue.pop(0)
                batch.append((texts, future))
                size += len(texts)
            self._queued_texts -= size
            self._inflight += 1
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            texts = [text for request, _ in batch for text in request]
            try:
                vectors, positions = encode_unique(self.encoder, texts)
            except Exception:  # noqa: BLE001 - one bad input must not fail its neighbours: encode each alone
                self._encode_one_by_one(batch)
                continue
            finally:
                with self._cond:
                    self._inflight -= 1
            self.stats.record(len(batch), len(vectors))
            self._last_batch = len(batch)
            start = 0
            for request, future in batch:
                future.set_result(vectors[positions[start : start + len(request)]])
                start += len(request)

    def _encode_one_by_one(self, batch: list[tuple[list[str], Future]]) -> None:
        """After a failed batch: each request encoded on its own, so only the request that fails gets the error."""
        for request, future in batch:
            try:
                future.set_result(np.asarray(self.encoder.encode(request), dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - this caller's own error
                future.set_exception(exc)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    def __enter__(self) -> "BatchingEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
