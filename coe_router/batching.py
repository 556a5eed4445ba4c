"""Query embeddings on the hot path: micro-batching of concurrent queries (and the query LRU, re-exported).

A router's floor is one query embedding. Two things make many queries cheaper than many floors:

- repeated queries (retries, a user pressing enter twice, the same FAQ) are served from `EmbeddingLRU`
  (`SentenceEncoder` keeps one for its small calls; the batchers take one too);
- concurrent queries are encoded together, one encoder call per batch. On a 2-core CPU this buys less than one
  might hope: MiniLM on a short question is already compute-bound, and one call of 16-32 texts costs about 1.2-1.4x
  less per text than 16-32 calls of one (measured by `python -m bench`, docs/PERFORMANCE.md). Batching mostly
  keeps the cores busy and the per-call overheads (tokenizer, thread hand-offs, Python) out of the way.

Two micro-batchers share one policy, *natural batching with an adaptive linger*:

- `MicroBatcher` (asyncio): `await batcher.embed(text)` from any number of tasks on one event loop; the encoder
  runs in a worker thread, so the loop keeps collecting the next batch while the current one encodes.
- `BatchingEncoder` (threads): an `Encoder` (same `encode(texts)` as SentenceEncoder) that many threads may call
  at once; drop it into `ExampleStore` / `build_graph(encoder=...)` and the graph's retriever nodes, which LangGraph
  runs in worker threads under `ainvoke`, share encoder calls without any change to the nodes.

At most `workers` encoder calls run at a time (default 1; with SentenceEncoder's one-thread calls, one per core);
requests that arrive meanwhile form the next batch. A batch is sent as soon as an encoder slot is free, except that
under concurrent load (another batch is being encoded, or the previous batch held more than one request) the
batcher first lingers up to `max_wait_s` (default 2 ms) or until `max_batch` texts are waiting. A lone caller
therefore never waits for a linger: its latency is the encoder call plus a thread hand-off.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .embeddings import EmbeddingLRU, Encoder, encode_through_cache

__all__ = ["BatchStats", "BatchingEncoder", "EmbeddingLRU", "MicroBatcher", "encode_through_cache"]


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


def _encode_unique(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Encode each distinct text once; returns the vectors and, per input text, its row."""
    rows: dict[str, int] = {}
    positions = [rows.setdefault(text, len(rows)) for text in texts]
    return np.asarray(encoder.encode(list(rows)), dtype=np.float32), positions


def _check_settings(max_batch: int, max_wait_s: float, workers: int) -> None:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if max_wait_s < 0:
        raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")


class MicroBatcher:
    """asyncio micro-batcher: concurrent `await embed(text)` calls share one `encoder.encode` call per batch.

    Use one instance per event loop. Up to `workers` encoder calls run at once, each in a worker thread (with a
    one-thread torch encoder, `workers=2` keeps both cores of a 2-core machine busy). `cache` (optional)
    answers repeated texts without queueing them.
    """

    def __init__(self, encoder: Encoder, *, max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1,
                 cache: EmbeddingLRU | None = None, executor: ThreadPoolExecutor | None = None):
        _check_settings(max_batch, max_wait_s, workers)
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self.cache = cache
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coe-embed")
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._inflight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_batch = 1
        self.stats = BatchStats()

    async def embed(self, text: str) -> np.ndarray:
        """The unit vector of one text (1-D float32)."""
        if self.cache is not None:
            hit = self.cache.get(text)
            if hit is not None:
                return hit
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((text, future))
        self._schedule(loop)
        return await future

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of several texts (rows in order); they join the same batches as single requests."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(await asyncio.gather(*(self.embed(text) for text in texts)))

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._inflight >= self.workers:
            return  # a finishing batch sends whatever has queued up by then
        under_load = self._inflight > 0 or self._last_batch > 1
        if len(self._pending) >= self.max_batch or not under_load or self.max_wait_s == 0:
            self._cancel_timer()
            self._flush(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush, loop)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        while self._pending and self._inflight < self.workers:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            batch = [(text, future) for text, future in batch if not future.cancelled()]
            if not batch:
                continue
            self._inflight += 1
            texts = [text for text, _ in batch]
            task = loop.run_in_executor(self._executor, _encode_unique, self.encoder, texts)
            task.add_done_callback(lambda done, batch=batch: self._deliver(loop, batch, done))

    def _deliver(self, loop: asyncio.AbstractEventLoop, batch, done: asyncio.Future) -> None:
        self._inflight -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            vectors, positions = done.result()
            self.stats.record(len(batch), len(vectors))
            self._last_batch = len(batch)
            for (text, future), row in zip(batch, positions):
                if self.cache is not None:
                    self.cache.put(text, vectors[row])
                if not future.done():
                    future.set_result(vectors[row].copy())
        else:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        # Requests that queued while the encoder ran have already waited: send them now, no linger.
        if self._pending:
            self._cancel_timer()
            self._flush(loop)

    async def aclose(self) -> None:
        self._cancel_timer()
        if self._own_executor:
            self._executor.shutdown(wait=True)


class BatchingEncoder:
    """An `Encoder` that threads may call concurrently; their texts share `encoder.encode` calls.

    `workers` threads encode batches (at most that many encoder calls at once). A call with more than
    `max_batch` texts (bulk indexing) goes straight to the encoder, outside the batches. `close()` stops the
    workers; the encoder stays usable (calls then go straight through).
    """

    def __init__(self, encoder: Encoder, *, max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1,
                 cache: EmbeddingLRU | None = None):
        _check_settings(max_batch, max_wait_s, workers)
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
                vectors, positions = _encode_unique(self.encoder, texts)
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the encoder's error
                for _, future in batch:
                    future.set_exception(exc)
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
