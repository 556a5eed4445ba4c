"""The knn router's memory vectors, computed once and kept in Chroma beside the retriever's examples.

Embedding 7,000 recorded questions took 80-110 s at every start of every replica. The vectors now live in a
collection keyed by content (a hash of each question) and named after the encoder, on the retriever's Chroma
(a local folder, or the server every replica shares): a restart with an unchanged memory reads them back, a
changed question or a new encoder computes only what is missing.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from coe_router.retrieval.identity import EncoderIdentity, check_encoder, identify

BATCH = 1000  # under Chroma's maximum batch size, and a progress step


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def memory_collection_name(base: str, identity: EncoderIdentity) -> str:
    tag = hashlib.sha256(f"{identity.name}|{identity.dim}|{identity.probe}".encode()).hexdigest()[:10]
    return f"{base}-knn-memory-{tag}"


def memory_vectors(client, base: str, encoder, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """Unit vectors of `texts` (one row each), read from the memory collection where present, encoded and stored
    where not."""
    from tqdm import tqdm

    identity = identify(encoder)
    collection = client.get_or_create_collection(memory_collection_name(base, identity), embedding_function=None,
                                                 metadata={"hnsw:space": "cosine"})
    check_encoder(collection, encoder, f"the knn memory collection {collection.name!r}",
                  "delete that collection to rebuild it", identity)
    keys = [text_key(text) for text in texts]
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
    return np.stack([known[key] for key in keys])
