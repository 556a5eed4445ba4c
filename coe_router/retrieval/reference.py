"""sentence-transformers' own vectors for the probe texts, recorded once per model folder and package versions.

The direct MiniLM path is trusted only where it matches `SentenceTransformer.encode`. Checking that live means
importing sentence-transformers and transformers (about 8 s) at every start; the reference vectors are computed
the first time, stored under $COE_CACHE_DIR (default ~/.cache/coe-router) and compared against at every later
start. A changed model file or a new torch / transformers / sentence-transformers version records a new reference.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from coe_router.cache import cache_root

PACKAGES = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors")


def reference_dir() -> Path:
    return cache_root() / "encoder-reference"


def reference_key(folder: Path) -> str:
    """Changes with any file of the model folder (name, size, modification time) and with the packages' versions."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{package}=={version}\n".encode())
    return digest.hexdigest()[:24]


def read_reference(folder: Path) -> np.ndarray | None:
    try:
        return np.load(reference_dir() / f"{reference_key(folder)}.npy")
    except (OSError, ValueError):
        return None


def write_reference(folder: Path, vectors: np.ndarray) -> None:
    """Best effort (a read-only home only costs the next start the live check); written atomically."""
    target = reference_dir() / f"{reference_key(folder)}.npy"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as out:
            np.save(out, np.asarray(vectors, dtype=np.float32))
        os.replace(out.name, target)
    except OSError:
        pass
