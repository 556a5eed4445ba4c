"""What a start does about Python's garbage collector.

A start imports torch, Chroma and langchain-openai and reads the memory: millions of objects that live as long as
the process. Each full collection walks all of them, and a start triggers several: on two cores they took 1.0-1.5 s
of a 7.5 s fresh knn start (6,933 x 29 memory, docs/PERFORMANCE.md). Building allocates almost no cyclic
garbage, so the collector waits until the build is done.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block; restored after it (left off if it was off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
