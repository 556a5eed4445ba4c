"""Labelled examples in a persistent Chroma collection: the retriever's memory (CoE-Ops eq. 10-13).

We embed with our own encoder and hand Chroma the vectors, so Chroma never reaches for its default ONNX model
(which it would download) and the index and the queries are guaranteed to use the same embedding.

Chroma stays the store of record. For the index sizes a router keeps (hundreds to tens of thousands of
examples), searches run on an in-memory copy of the collection's unit vectors: one matrix-vector product is
exact (HNSW is approximate) and costs a fraction of a millisecond at 2,000 examples, against a few milliseconds
for a Chroma query (measured in bench/, docs/PERFORMANCE.md). Larger collections are searched by Chroma's HNSW
index. The copy is loaded on the first search, refreshed after this store's `add()`, and re-validated against
`collection.count()` at most every `recheck_s` seconds, so examples another process adds are picked up too.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from coe_router.jsonl import JsonlError, read_jsonl, require
from coe_router.retrieval.encoder import Encoder, as_embeddings, as_encoder
from coe_router.schema import LabelledExample, RetrievedExample


class ExamplesFileError(JsonlError):
    """A questions.jsonl line that cannot be used as a labelled example."""


def read_examples(path: str | Path) -> list[LabelledExample]:
    """Labelled examples from a questions.jsonl file (`question`, `category`, optional `question_id`)."""
    examples = []
    for number, row in read_jsonl(path):
        require(row, ("question", "category"), path, number, ExamplesFileError)
        question, task = row["question"], row["category"]
        if not isinstance(question, str) or not question.strip():
            raise ExamplesFileError(f"{path}:{number}: `question` must be a non-empty string")
        example_id = str(row.get("question_id") or hashlib.sha1(f"{task}\n{question}".encode()).hexdigest()[:16])
        examples.append(LabelledExample(id=example_id, question=question, task=str(task)))
    return examples


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class _Mirror:
    """The collection's examples in memory: unit vectors (one row each) and their ids, texts and labels."""

    vectors: np.ndarray
    ids: list[str]
    questions: list[str]
    tasks: list[str]


def _is_cosine(collection) -> bool:
    """True when the collection measures cosine distance, so 1 - distance is exactly a dot of unit vectors."""
    metadata = getattr(collection, "metadata", None) or {}
    if metadata.get("hnsw:space") == "cosine":
        return True
    configuration = getattr(collection, "configuration", None) or {}
    hnsw = configuration.get("hnsw") if isinstance(configuration, dict) else None
    return bool(hnsw and hnsw.get("space") == "cosine")


class ExampleStore:
    """Top-k labelled examples by cosine similarity, over any Chroma collection (persistent or in-memory).

    `exact_limit`: up to this many examples, search an in-memory copy exactly with numpy (cosine collections
    only); above it, or with `exact_limit=0`, query Chroma. `recheck_s`: how often a search may call
    `collection.count()` to notice examples written by someone else (examples this store's `add()` writes are
    seen at once; another writer's within `recheck_s`).
    """

    DEFAULT_EXACT_LIMIT = 20_000

    def __init__(self, collection, encoder: Encoder | Embeddings, *, exact_limit: int = DEFAULT_EXACT_LIMIT,
                 recheck_s: float = 1.0, client=None):
        self.collection = collection
        self.client = client
        self.encoder = as_encoder(encoder)
        self.exact_limit = exact_limit if _is_cosine(collection) else 0
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._state: tuple[_Mirror | None, int, float] = (None, -1, float("-inf"))  # copy, size, checked at

    def count(self) -> int:
        return self.collection.count()

    def add(self, examples: Sequence[LabelledExample], batch_size: int = 256, progress: bool = False) -> int:
        """Encode and upsert examples (ids make re-runs idempotent); returns how many were written."""
        from tqdm import tqdm

        bar = tqdm(total=len(examples), desc="indexing examples", unit="ex", disable=not progress)
        try:
            for batch in _batches(list(examples), batch_size):
                vectors = self.encoder.encode([e.question for e in batch])
                self.collection.upsert(
                    ids=[e.id for e in batch],
                    embeddings=[v.tolist() for v in vectors],
                    documents=[e.question for e in batch],
                    metadatas=[{"task": e.task} for e in batch],
                )
                bar.update(len(batch))
        finally:
            bar.close()
            self.invalidate()
        return len(examples)

    def as_vectorstore(self):
        """The same collection as a LangChain `VectorStore` (langchain-chroma): documents are the example
        questions, `metadata["task"]` their labels, so `as_vectorstore().as_retriever()` drops into any LangChain
        retrieval chain. Needs the Chroma client (stores opened by `open_example_store` have it)."""
        from langchain_chroma import Chroma

        if self.client is None:
            raise ValueError("as_vectorstore needs the Chroma client: open the store with ExampleStore(..., client=)")
        return Chroma(client=self.client, collection_name=self.collection.name,
                      embedding_function=as_embeddings(self.encoder), collection_metadata={"hnsw:space": "cosine"})

    def invalidate(self) -> None:
        """Forget the in-memory copy; the next search reloads it (call after writing to the collection directly)."""
        with self._lock:
            self._state = (None, -1, float("-inf"))

    def search(self, query: str, k: int) -> list[RetrievedExample]:
        return self.search_vector(self.encoder.encode([query])[0], k)

    def search_vector(self, vector, k: int) -> list[RetrievedExample]:
        if k <= 0:
            return []
        mirror, size = self._current()
        if size == 0:
            return []
        if mirror is not None:
            return self._search_mirror(mirror, vector, k)
        found = self.collection.query(
            query_embeddings=[list(map(float, vector))], n_results=k, include=["documents", "metadatas", "distances"],
        )
        return [
            RetrievedExample(id=i, question=doc, task=str(meta["task"]), score=round(1.0 - float(dist), 6))
            for i, doc, meta, dist in zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0])
        ]

    def _current(self) -> tuple[_Mirror | None, int]:
        """The in-memory copy (None: search Chroma) and the collection size, re-validated every recheck_s."""
        mirror, size, checked_at = self._state  # one tuple, swapped atomically, so readers never see a mix
        if time.monotonic() - checked_at < self.recheck_s:
            return mirror, size
        with self._lock:
            mirror, known, checked_at = self._state
            if time.monotonic() - checked_at < self.recheck_s:
                return mirror, known
            size = self.collection.count()
            if size != known or (mirror is None and 0 < size <= self.exact_limit):
                mirror = self._try_load_mirror() if 0 < size <= self.exact_limit else None
                size = len(mirror.ids) if mirror is not None else size
            # An empty collection is re-counted on every search (nothing to speed up there, and the first examples
            # another process writes show up at once).
            self._state = (mirror, size, time.monotonic() if size > 0 else float("-inf"))
            return mirror, size

    def _try_load_mirror(self) -> _Mirror | None:
        """The in-memory copy, or None (search Chroma) when Chroma cannot hand over its vectors; e.g. a persistent
        collection that another process wrote since this client opened it can fail `get()` ("Error finding id")
        while its query path still answers."""
        try:
            return self._load_mirror()
        except Exception:  # noqa: BLE001 - any failure: keep the behaviour of the plain Chroma search
            return None

    def _load_mirror(self) -> _Mirror:
        got = self.collection.get(include=["embeddings", "documents", "metadatas"])
        vectors = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0))
        return _Mirror(vectors, list(got["ids"]), list(got["documents"]), [str(m["task"]) for m in got["metadatas"]])

    @staticmethod
    def _search_mirror(mirror: _Mirror, vector, k: int) -> list[RetrievedExample]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        # einsum, not `@`: a matrix-vector `@` goes to OpenBLAS, whose threads on a busy 2-core machine turn a
        # 0.1 ms product into 12 ms (measured, docs/PERFORMANCE.md); einsum runs it on the calling thread.
        sims = np.einsum("ij,j->i", mirror.vectors, query / norm if norm > 0 else query)
        k = min(k, sims.shape[0])
        top = np.argpartition(-sims, k - 1)[:k] if k < sims.shape[0] else np.arange(sims.shape[0])
        top = top[np.argsort(-sims[top], kind="stable")]
        return [
            RetrievedExample(id=mirror.ids[i], question=mirror.questions[i], task=mirror.tasks[i],
                             score=round(float(sims[i]), 6))
            for i in top.tolist()
        ]


def chroma_client(persist_dir: str | Path | None = None, *, url: str | None = None):
    """A Chroma client with telemetry off: on a Chroma server for `url` (http://host:port, shared by every replica),
    in memory for None, else one per folder per process."""
    import chromadb
    from chromadb.config import Settings

    if url is not None:
        return _http_client(url)
    if persist_dir is None:
        return chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    return _persistent_client(str(Path(persist_dir).expanduser().resolve()))


class ChromaServerError(ConnectionError):
    """The Chroma server named by `retriever.chroma_url` cannot be reached."""


@functools.lru_cache(maxsize=None)
def _http_client(url: str):
    """One HTTP client per server per process (it holds a connection pool; searches from every thread share it)."""
    from urllib.parse import urlsplit

    import chromadb
    from chromadb.config import Settings

    parts = urlsplit(url)
    ssl = parts.scheme == "https"
    try:
        return chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if ssl else 8000), ssl=ssl,
                                   settings=Settings(anonymized_telemetry=False))
    except Exception as exc:  # noqa: BLE001 - chromadb raises several kinds for an unreachable server
        raise ChromaServerError(f"cannot reach the Chroma server at {url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@functools.lru_cache(maxsize=None)
def _persistent_client(folder: str):
    import chromadb
    from chromadb.config import Settings

    Path(folder).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=folder, settings=Settings(anonymized_telemetry=False))


def chroma_collection(name: str, persist_dir: str | Path | None, client=None):
    """A cosine-space Chroma collection, persistent when `persist_dir` is given (or on the server `client` reaches)."""
    client = client or chroma_client(persist_dir)
    return client.get_or_create_collection(name=name, embedding_function=None, metadata={"hnsw:space": "cosine"})
