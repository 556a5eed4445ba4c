"""Query embeddings started before they are asked for.

The graph's intake knows the query about a millisecond before the retriever asks for its vector: LangGraph spends
that time applying the intake's writes and planning the next step on the calling thread, while the encoder's own
thread (and, with one torch thread per call, a core) sits idle. `prefetch(text)` starts the embedding there at
once; the retriever's `encode([text])` then waits for that result instead of computing it again. On the 7k-row
knn memory this takes 1 to 1.5 ms off a 14 ms decision on two cores (docs/PERFORMANCE.md).

A finished prefetch goes into the encoder's LRU and leaves the table, so the table only ever holds embeddings
in flight, and a prefetch nobody asks for (a run that failed before its retriever) costs one embedding, no memory.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

import numpy as np

from coe_router.retrieval.lru import EmbeddingLRU

# Embeddings in flight at most; beyond that a prefetch is dropped (the retriever computes its vector as before).
MAX_IN_FLIGHT = 256


class Prefetched:
    """text -> Future of its (1, d) vectors, for single texts started ahead of need; thread-safe."""

    def __init__(self, cache: EmbeddingLRU, limit: int = MAX_IN_FLIGHT):
        self.cache, self.limit = cache, limit
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._futures)

    def start(self, text: str, submit: Callable[[], Future | None]) -> None:
        """Start `submit()` (an embedding of [text]) unless that vector is cached, in flight, or too many are."""
        if not self.cache.maxsize or text in self.cache:
            return
        with self._lock:
            if text in self._futures or len(self._futures) >= self.limit:
                return
            future = submit()
            if future is None:
                return
            self._futures[text] = future
        future.add_done_callback(lambda done: self._settle(text, done))

    def take(self, text: str) -> np.ndarray | None:
        """The (1, d) vectors of an embedding of `text` in flight, once it is done; None when there is none or it
        failed (the caller then encodes the text itself and meets the error as its own)."""
        with self._lock:
            future = self._futures.get(text)
        if future is None:
            return None
        try:
            return np.array(future.result(), dtype=np.float32)
        except Exception:  # noqa: BLE001 - see the docstring: the caller's own call reports it
            return None

    def _settle(self, text: str, done: Future) -> None:
        if not done.cancelled() and done.exception() is None:
            self.cache.put(text, np.asarray(done.result(), dtype=np.float32)[0])
        with self._lock:
            self._futures.pop(text, None)
