"""Bearer-token check of the service: constant-time, case-insensitive scheme, every path but the health check."""

from __future__ import annotations

import hmac

OPEN_PATHS = ("/healthz",)


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `token` (scheme `Bearer`, any case)."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))


def needs_token(path: str) -> bool:
    """Everything needs the token when one is set (the API, /docs and /openapi.json too), except the health check."""
    return path not in OPEN_PATHS
