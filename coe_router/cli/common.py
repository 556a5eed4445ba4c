"""Small helpers that several command groups share."""

from __future__ import annotations

import json


def split_list(value: str | None) -> list[str] | None:
    """`a, b,c` -> ["a", "b", "c"]; None or empty -> None."""
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


def print_json(payload) -> None:
    """One machine-readable object on stdout."""
    print(json.dumps(payload, ensure_ascii=False, indent=None))
