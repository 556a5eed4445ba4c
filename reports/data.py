"""The recorded public data behind docs/RESULTS.md and the benchmarks, found with no flag.

The repository carries it compressed (`data/recorded.tar.xz`, 1.9 MB: MMLU-Pro model outputs, LLMRouter scores
with prices, DevOps-Eval leaderboards; licences and sources in `data/README.md`). The first use unpacks it into
the cache ($COE_CACHE_DIR or ~/.cache/coe-router, under `data/<digest>`), once per archive version; `--data` or
$COE_DATA_DIR point at another copy of the same layout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from coe_router.cache import cache_root

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "data" / "recorded.tar.xz"
MARKER = "mmlu-pro-model-outputs"


def unpacked(archive: Path = ARCHIVE) -> Path:
    """The archive's folder in the cache, unpacked first if it is not there (atomically: a half-unpacked copy is
    never used)."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = cache_root() / "data" / digest
    if (target / MARKER).is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / MARKER).is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_data_dir(explicit: str | Path | None = None) -> Path:
    """--data, else $COE_DATA_DIR, else the repository's own copy (unpacked into the cache)."""
    for candidate in (explicit, os.environ.get("COE_DATA_DIR")):
        if candidate:
            if not (Path(candidate) / MARKER).is_dir():
                raise FileNotFoundError(f"data folder {candidate} does not hold {MARKER}/")
            return Path(candidate)
    if not ARCHIVE.is_file():
        raise FileNotFoundError(f"{ARCHIVE} is missing: pass --data or set COE_DATA_DIR (a folder holding {MARKER}/)")
    return unpacked()
