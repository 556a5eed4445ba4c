"""The one JSONL reader: every `.jsonl` the router reads (examples, questions, journals, imported scores).

Errors name the file and the line, so a bad row in a 10,000-line file is found at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


class JsonlError(ValueError):
    """A line of a JSONL file that is not a JSON object (or lacks what the caller needs)."""


def read_jsonl(path: str | Path, *, skip_torn: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line of `path`.

    `skip_torn`: drop lines that do not parse (an append-only journal whose last line a kill cut in half)
    instead of raising JsonlError.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if skip_torn:
                    continue
                raise JsonlError(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                if skip_torn:
                    continue
                raise JsonlError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def repair_torn_tail(path: str | Path) -> int:
    """Cut an append-only journal back to its last complete line (a kill mid-write leaves a fragment, and the next
    append would be glued onto it, making both records unreadable); returns the bytes dropped. The dropped record
    never finished, so its work is simply done again."""
    path = Path(path)
    if not path.exists():
        return 0
    with path.open("rb+") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        keep = size
        while keep > 0:  # back to the byte after the last newline, a block at a time
            start = max(keep - 65536, 0)
            handle.seek(start)
            block = handle.read(keep - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        handle.truncate(keep)
        return size - keep


def require(row: dict, fields: tuple[str, ...], path: str | Path, number: int, error: type[ValueError] = JsonlError) -> None:
    """Raise `error` naming the file, the line and the missing fields unless `row` has all of `fields`."""
    missing = [name for name in fields if name not in row]
    if missing:
        raise error(f"{path}:{number}: missing {', '.join(f'`{name}`' for name in missing)}")
