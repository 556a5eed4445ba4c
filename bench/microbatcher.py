"""An asyncio micro-batcher, the benchmark's comparison point for `BatchingEncoder` (same policy, one event loop).

`await batcher.embed(text)` from any number of tasks; the encoder runs in a worker thread, so the loop keeps
collecting the next batch while the current one encodes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from coe_router.retrieval.batching import BatchStats, check_settings, encode_unique
from coe_router.retrieval.encoder import Encoder
from coe_router.retrieval.lru import EmbeddingLRU


class MicroBatcher:
    """asyncio micro-batcher: concurrent `await embed(text)` calls share one `encoder.encode` call per batch.

    Use one instance per event loop. Up to `workers` encoder calls run at once, each in a worker thread (with a
    one-thread torch encoder, `workers=2` keeps both cores of a 2-core machine busy). `cache` (optional)
    answers repeated texts without queueing them.
    """

    def __init__(self, encoder: Encoder, *, max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1,
                 cache: EmbeddingLRU | None = None, executor: ThreadPoolExecutor | None = None):
        check_settings(max_batch, max_wait_s, workers)
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
            task = loop.run_in_executor(self._executor, encode_unique, self.encoder, texts)
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
