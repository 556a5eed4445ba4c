"""Time budgets: every expert attempt is bounded by total time, derived from the request's deadline.

httpx's `timeout` is per read: an upstream that sends one byte a second never trips it, and a hung upstream holds
an attempt for the whole timeout however little of the request's deadline is left. So each attempt runs under an
`AttemptClock` (a context variable), and `BoundedTransport`, the transport of every OpenAI-compatible expert's
HTTP client, enforces it on the wire: each read waits at most what the clock had left when the request went out
(a silent upstream), and a response still arriving when the clock's deadline passes is cut (`AttemptTimeout`),
whatever the bytes trickle.

An attempt has two phases (see `AttemptClock`): it must start answering (its first token) within the model's
`timeout_s`; once it has, it may take `answer_timeout_s` in all, or, when its tokens are already on their way to
the caller (a stream), until the request's deadline, because no fallback can replace tokens the caller has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx

DEADLINE_KEY = "__coe_deadline"
"""Key of `config["configurable"]` holding the request's deadline (time.monotonic() seconds), set by the service
(or any caller) and read by the expert nodes; dunder keys stay out of run metadata and checkpoints."""

RESERVE_SHARE = 0.5
"""An attempt that has fallbacks after it takes at most this share of the time left, so the rest of the chain
still fits in the deadline."""

MAX_RETRY_WAIT_WITH_FALLBACK_S = 1.0
"""A retry (or a `Retry-After`) longer than this is not waited for when a fallback expert can answer instead."""

DEADLINE_GRACE_S = 1.0
"""An attempt whose tokens reach the caller runs this long past the request's deadline, so that the deadline is
reported as such (504, `deadline_exceeded`) by the service's own timer rather than as a failed expert."""

@dataclass(frozen=True)
class AttemptPolicy:
    """How long one expert attempt may take and how often a transient failure is retried (models.<name>: timeout_s,
    answer_timeout_s, max_retries)."""

    first_token_s: float = 10.0
    answer_s: float = 60.0
    max_retries: int = 1


class AttemptTimeout(httpx.ReadTimeout):
    """An attempt ran past its time budget (no first token in time, or the whole answer too slow)."""


def request_deadline(config: dict | None) -> float:
    """The request's deadline (monotonic seconds) from a node's config; infinity when the caller set none."""
    configurable = (config or {}).get("configurable") or {}
    deadline = configurable.get(DEADLINE_KEY)
    return float(deadline) if deadline is not None else math.inf


def with_deadline(config: dict, seconds: float) -> dict:
    """`config` with a deadline `seconds` from now for every expert attempt of the run."""
    configurable = {**(config.get("configurable") or {}), DEADLINE_KEY: time.monotonic() + seconds}
    return {**config, "configurable": configurable}


@dataclass
class AttemptClock:
    """The time budget of one expert attempt.

    `first_token_s`: the attempt must produce its first token by then. `answer_s`: the whole answer, from the
    attempt's start, when its tokens are not yet seen by anyone. `hard_deadline`: never past it (the request's
    deadline, or this attempt's share of it when fallbacks follow)."""

    first_token_s: float
    answer_s: float
    hard_deadline: float = math.inf
    request_deadline: float = math.inf
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = min(self.started + self.first_token_s, self.hard_deadline)

    def first_token(self, seen_by_caller: bool) -> None:
        """The attempt started answering: from now on it is bounded by the answer budget, or by the request's
        deadline when its tokens already reach the caller (cutting them would help nobody)."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if seen_by_caller:
            self.deadline = self.request_deadline + DEADLINE_GRACE_S  # the service's deadline error comes first
        else:
            self.deadline = min(self.started + self.answer_s, self.hard_deadline)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            phase = "its first token" if self.first_token_at is None else "the answer"
            raise AttemptTimeout(f"no {phase} within the attempt's time budget "
                                 f"({time.monotonic() - self.started:.1f}s)")


_CLOCK: contextvars.ContextVar[AttemptClock | None] = contextvars.ContextVar("coe_attempt_clock", default=None)


@contextlib.contextmanager
def attempt_clock(clock: AttemptClock) -> Iterator[AttemptClock]:
    """Run an attempt under `clock`: every request of an expert's HTTP client in this context obeys it."""
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


def _bounded(request: httpx.Request) -> AttemptClock | None:
    """The running attempt's clock, with the request's timeouts cut to what the clock leaves."""
    clock = _CLOCK.get()
    if clock is None:
        return None
    clock.check()
    left = clock.remaining()
    timeouts = dict(request.extensions.get("timeout") or {})
    request.extensions["timeout"] = {key: min(timeouts.get(key) or math.inf, left)
                                     for key in ("connect", "read", "write", "pool")}
    return clock


DONE_MARK = b"data: [DONE]"
DRAIN_LIMIT = 1024


class _DeadlineStream(httpx.SyncByteStream):
    """The response body, cut once the attempt's clock runs out. A stream that ended with `[DONE]` is read to its
    end before closing (the openai client closes right after `[DONE]`, which would throw the connection away
    and cost every streamed answer a new connection, a new TLS handshake on a remote endpoint)."""

    def __init__(self, inner: httpx.SyncByteStream, clock: AttemptClock | None):
        self._inner, self._clock = inner, clock
        self._tail = b""

    def __iter__(self) -> Iterator[bytes]:
        self._pieces = iter(self._inner)
        for piece in self._pieces:
            if self._clock is not None:
                self._clock.check()
            self._tail = (self._tail + piece)[-64:]
            yield piece

    def close(self) -> None:
        if DONE_MARK in self._tail:
            with contextlib.suppress(Exception):
                left = DRAIN_LIMIT
                for piece in self._pieces:
                    left -= len(piece)
                    if left < 0:
                        break
        self._inner.close()


class _AsyncDeadlineStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, clock: AttemptClock | None):
        self._inner, self._clock = inner, clock
        self._tail = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._pieces = aiter(self._inner)
        async for piece in self._pieces:
            if self._clock is not None:
                self._clock.check()
            self._tail = (self._tail + piece)[-64:]
            yield piece

    async def aclose(self) -> None:
        if DONE_MARK in self._tail:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    async for _ in self._pieces:
                        pass
        await self._inner.aclose()


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default TLS verification, built once for every pool: each context reads the CA bundle (about
    30 ms), and a config of 29 experts spent 0.9 s of its start building 58 of them."""
    return httpx.create_ssl_context()


class BoundedTransport(httpx.BaseTransport):
    """httpx's transport, bounded by the running attempt's clock (no clock: no bound)."""

    def __init__(self, inner: httpx.BaseTransport | None = None):
        self._inner = inner or httpx.HTTPTransport(limits=httpx.Limits(max_connections=None), verify=ssl_context())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        clock = _bounded(request)
        response = self._inner.handle_request(request)
        response.stream = _DeadlineStream(response.stream, clock)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncBoundedTransport(httpx.AsyncBaseTransport):
    """The async twin of `BoundedTransport`, with one connection pool per event loop: a pool's connections
    belong to the loop that opened them, and a library user may run `asyncio.run(graph.ainvoke(...))` twice."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport] | None = None):
        self._make = make or (lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None),
                                                               verify=ssl_context()))
        self._pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _pool(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = self._make()
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        clock = _bounded(request)
        response = await self._pool().handle_async_request(request)
        response.stream = _AsyncDeadlineStream(response.stream, clock)
        return response

    async def aclose(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()
