"""A small LRU of text -> unit vector: repeated queries (retries, a user pressing enter twice, the same FAQ)
skip the encoder. The encoder keeps one for its small calls; the micro-batcher takes one too."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np


class EmbeddingLRU:
    """Thread-safe LRU of text -> unit vector; hands out copies, so no caller can corrupt a cached vector."""

    def __init__(self, maxsize: int = 1024):
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._data.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._data.move_to_end(text)
            self.hits += 1
            return vector.copy()

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.maxsize == 0:
            return
        stored = np.array(vector, dtype=np.float32, copy=True)
        stored.setflags(write=False)
        with self._lock:
            self._data[text] = stored
            self._data.move_to_end(text)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


def encode_through_cache(encode: Callable[[list[str]], np.ndarray], texts: Sequence[str],
                         cache: EmbeddingLRU | None) -> np.ndarray:
    """`encode(texts)`, encoding only the texts `cache` does not hold (each distinct text once)."""
    texts = list(texts)
    if cache is None or not texts:
        return np.asarray(encode(texts), dtype=np.float32)
    if len(texts) == 1:  # a query (the router looks twice: examples, then memory), in as few steps as can be
        if (vector := cache.get(texts[0])) is not None:
            return vector[None, :]  # get() hands out a copy
        fresh = np.asarray(encode(texts), dtype=np.float32)
        cache.put(texts[0], fresh[0])  # put() stores a copy
        return fresh
    found = [cache.get(text) for text in texts]
    missing = list(dict.fromkeys(text for text, vector in zip(texts, found) if vector is None))
    if missing:
        fresh = np.asarray(encode(missing), dtype=np.float32)
        by_text = dict(zip(missing, fresh))
        for text, vector in by_text.items():
            cache.put(text, vector)
        found = [vector if vector is not None else by_text[text].copy() for text, vector in zip(texts, found)]
    return np.stack(found).astype(np.float32, copy=False)
