"""Secrets out of error texts: an upstream error that echoes an API key must not reach clients, logs or traces.

The model factory registers every key it reads (`api_key_env`); `redact` masks those values and anything shaped
like a bearer token or an OpenAI-style key.
"""

from __future__ import annotations

import re
import threading

_KNOWN: set[str] = set()
_LOCK = threading.Lock()
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk-)[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{6,}"),
)
MASK = "[redacted]"


def register_secret(value: str | None) -> None:
    """Remember a secret the process holds, so `redact` masks it wherever it shows up."""
    if value and len(value) >= 4:
        with _LOCK:
            _KNOWN.add(value)


def redact(text: str) -> str:
    with _LOCK:
        known = sorted(_KNOWN, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text
