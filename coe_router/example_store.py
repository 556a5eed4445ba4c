"""Labelled examples in a persistent Chroma collection: the retriever's memory (CoE-Ops eq. 10-13).

We embed with our own encoder and hand Chroma the vectors, so Chroma never reaches for its default ONNX model
(which it would download) and the index and the queries are guaranteed to use the same embedding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .embeddings import Encoder
from .schema import LabelledExample, RetrievedExample


class ExamplesFileError(ValueError):
    """A questions.jsonl line that cannot be used as a labelled example."""


def read_examples(path: str | Path) -> list[LabelledExample]:
    """Labelled examples from a questions.jsonl file (`question`, `category`, optional `question_id`)."""
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, task = row["question"], row["category"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ExamplesFileError(f"{path}:{number}: needs a JSON object with `question` and `category` ({exc})") from None
            if not isinstance(question, str) or not question.strip():
                raise ExamplesFileError(f"{path}:{number}: `question` must be a non-empty string")
            example_id = str(row.get("question_id") or hashlib.sha1(f"{task}\n{question}".encode()).hexdigest()[:16])
            examples.append(LabelledExample(id=example_id, question=question, task=str(task)))
    return examples


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ExampleStore:
    """Top-k labelled examples by cosine similarity, over any Chroma collection (persistent or in-memory)."""

    def __init__(self, collection, encoder: Encoder):
        self.collection = collection
        self.encoder = encoder

    def count(self) -> int:
        return self.collection.count()

    def add(self, examples: Sequence[LabelledExample], batch_size: int = 256, progress: bool = False) -> int:
        """Encode and upsert examples (ids make re-runs idempotent); returns how many were written."""
        from tqdm import tqdm

        bar = tqdm(total=len(examples), desc="indexing examples", unit="ex", disable=not progress)
        for batch in _batches(list(examples), batch_size):
            vectors = self.encoder.encode([e.question for e in batch])
            self.collection.upsert(
                ids=[e.id for e in batch],
                embeddings=[v.tolist() for v in vectors],
                documents=[e.question for e in batch],
                metadatas=[{"task": e.task} for e in batch],
            )
            bar.update(len(batch))
        bar.close()
        return len(examples)

    def search(self, query: str, k: int) -> list[RetrievedExample]:
        return self.search_vector(self.encoder.encode([query])[0], k)

    def search_vector(self, vector, k: int) -> list[RetrievedExample]:
        if k <= 0 or self.count() == 0:
            return []
        found = self.collection.query(
            query_embeddings=[list(map(float, vector))], n_results=k, include=["documents", "metadatas", "distances"]
        )
        return [
            RetrievedExample(id=i, question=doc, task=str(meta["task"]), score=round(1.0 - float(dist), 6))
            for i, doc, meta, dist in zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0])
        ]


def chroma_collection(name: str, persist_dir: str | Path | None):
    """A cosine-space Chroma collection, persistent when `persist_dir` is given, with telemetry off."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if persist_dir is None:
        client = chromadb.EphemeralClient(settings=settings)
    else:
        Path(persist_dir).mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(persist_dir), settings=settings)
    return client.get_or_create_collection(name=name, embedding_function=None, metadata={"hnsw:space": "cosine"})


def ensure_indexed(store: ExampleStore, examples: Iterable[LabelledExample] | None, progress: bool = False) -> int:
    """Build the index on first use: if the collection is empty and examples are configured, add them."""
    if store.count() > 0 or examples is None:
        return 0
    return store.add(list(examples), progress=progress)
