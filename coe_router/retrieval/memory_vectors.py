"""The knn router's memory vectors, computed once and kept in Chroma beside the retriever's examples.

Embedding 7,000 recorded questions took 80-110 s at every start of every replica. The vectors now live in a
collection keyed by content (a hash of each question) and named after the encoder, on the retriever's Chroma
(a local folder, or the server every replica shares): a restart with an unchanged memory reads them back, a
changed question or a new encoder computes only what is missing.

Each machine also keeps the whole memory's vectors as one .npy file under $COE_CACHE_DIR/knn-memory, named after
the collection (so the encoder) and a hash of every question: reading 6,933 x 384 vectors back from Chroma took
0.4 s of a restart, the file takes milliseconds. The vectors are a function of the questions and the encoder
alone, so a file can only be missing, never stale; Chroma stays what replicas share.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from coe_router.cache import cache_root
from coe_router.retrieval.identity import EncoderIdentity, check_encoder, identify

BATCH = 1000  # under Chroma's maximum batch size, and a progress step


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def memory_collection_name(base: str, identity: EncoderIdentity) -> str:
    tag = hashlib.sha256(f"{identity.name}|{identity.dim}|{identity.probe}".encode()).hexdigest()[:10]
    return f"{base}-knn-memory-{tag}"


def default_cache_dir() -> Path:
    """$COE_CACHE_DIR/knn-memory, default ~/.cache/coe-router/knn-memory."""
    return cache_root() / "knn-memory"


class LocalCopy:
    """One memory's vectors in one file on this machine (module doc); a read or write that fails costs only time."""

    def __init__(self, folder: Path, collection: str, keys: list[str]):
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
        self.folder, self.collection, self.rows = folder, collection, len(keys)
        self.path = folder / f"{collection}-{digest}.npy"

    def read(self) -> np.ndarray | None:
        try:
            vectors = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError):  # absent, torn or foreign: Chroma has the vectors
            return None
        ok = vectors.ndim == 2 and vectors.shape[0] == self.rows and vectors.dtype == np.float32
        return vectors if ok else None

    def write(self, vectors: np.ndarray) -> None:
        """Saved atomically; this collection's files of other memories (an edited outcomes file) are removed."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
            os.replace(partial, self.path)
            for old in self.folder.glob(f"{self.collection}-*.npy"):
                if old != self.path:
                    old.unlink(missing_ok=True)
        except OSError:  # a read-only cache: the next start reads Chroma again
            pass


def memory_vectors(client, base: str, encoder, texts: Sequence[str], *, progress: bool = False,
                   cache_dir: Path | None = None) -> np.ndarray:
    """Unit vectors of `texts` (one row each): this machine's copy when it has one, else read from the memory
    collection where present, encoded and stored where not (and the copy written)."""
    from tqdm import tqdm

    identity = identify(encoder)
    name = memory_collection_name(base, identity)
    keys = [text_key(text) for text in texts]
    local = LocalCopy(cache_dir or default_cache_dir(), name, keys)
    if keys and (vectors := local.read()) is not None:
        return vectors
    collection = client.get_or_create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
    check_encoder(collection, encoder, f"the knn memory collection {collection.name!r}",
                  "delete that collection to rebuild it", identity)
    unique = list(dict.fromkeys(keys))
    known: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), BATCH):
        got = collection.get(ids=unique[start:start + BATCH], include=["embeddings"])
        known.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    first = dict(zip(reversed(keys), reversed(list(texts))))
    missing = [key for key in unique if key not in known]
    with tqdm(total=len(missing), desc="embedding the knn memory", unit="q", disable=not progress or not missing) as bar:
        for start in range(0, len(missing), BATCH):
            batch = missing[start:start + BATCH]
            vectors = np.asarray(encoder.encode([first[key] for key in batch]), dtype=np.float32)
            collection.upsert(ids=batch, embeddings=vectors.tolist())
            known.update(zip(batch, vectors))
            bar.update(len(batch))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = np.stack([known[key] for key in keys])
    local.write(vectors)
    return vectors
