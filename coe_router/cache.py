"""Where coe-router keeps what it can recompute (reference vectors, HNSW graphs, unpacked data):
$COE_CACHE_DIR, default ~/.cache/coe-router."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("COE_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "coe-router"
