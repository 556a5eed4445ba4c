"""Question embeddings cached on disk, so re-running an evaluation does not re-encode thousands of questions.

The cache key is a hash of the encoder's identity and of the exact texts, in order: a changed question, a
different split or another encoder all produce a new file, and a stale vector can never be served.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .embeddings import Encoder


def default_cache_dir() -> Path:
    """$COE_CACHE_DIR, else ~/.cache/coe-router/embeddings."""
    root = os.environ.get("COE_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "coe-router" / "embeddings"


def encoder_id(encoder: Encoder) -> str:
    """A name for the encoder that changes with the model: the MiniLM folder's name, else the class and size."""
    tokenizer = getattr(getattr(encoder, "model", None), "tokenizer", None)
    source = getattr(tokenizer, "name_or_path", None)
    if source:
        return f"{type(encoder).__name__}:{Path(source).parent.name}/{Path(source).name}"
    return f"{type(encoder).__name__}:{getattr(encoder, 'dim', '')}"


def texts_key(texts: Sequence[str], model_id: str) -> str:
    digest = hashlib.sha256(model_id.encode())
    for text in texts:
        digest.update(b"\x00" + text.encode("utf-8"))
    return digest.hexdigest()[:24]


def encode_cached(texts: Sequence[str], encoder: Encoder, *, cache_dir: str | Path | None = None,
                  model_id: str | None = None, batch_size: int = 256, progress: bool = True,
                  desc: str = "encoding") -> np.ndarray:
    """Unit vectors for `texts` (float32, one row per text), read from or written to the cache.

    `cache_dir=None` uses default_cache_dir(); cache_dir="-" disables the cache. Progress is a tqdm bar over batches (MiniLM encodes about 450 questions a second here).
    """
    texts = list(texts)
    use_cache = cache_dir != "-"
    path = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"{texts_key(texts, model_id or encoder_id(encoder))}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                return vectors
    from tqdm import tqdm

    chunks = []
    with tqdm(total=len(texts), desc=desc, unit="q", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            chunks.append(np.asarray(encoder.encode(batch), dtype=np.float32))
            bar.update(len(batch))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    return vectors
