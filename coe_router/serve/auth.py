"""Bearer-token check of the service: constant-time, case-insensitive scheme, every path but the health check."""

from __future__ import annotations

import hmac

OPEN_PATHS = ("/healthz",)


def bearer(header: str | None) -> str | None:
    """The secret an `Authorization` header carries (scheme `Bearer`, any case), or None."""
    scheme, _, value = (header or "").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `token`."""
    presented = bearer(header)
    return presented is not None and hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


def needs_token(path: str) -> bool:
    """Everything needs the token when one is set (the API, /docs and /openapi.json too), except the health check."""
    return path not in OPEN_PATHS
