"""Walking a route: the routed expert, then its fallbacks, each attempt inside its time budget, experts whose
circuit breaker is open skipped, retries only when they are cheaper than the fallback.

The one rule for streams: a failure before the attempt's first token reached anyone falls back invisibly (as
`invoke` always can); once its tokens were streamed to the caller, falling back would splice two experts' text,
so the failure is raised as `AnswerInterruptedError`, naming the expert and why. Whether tokens reach someone is
known from the run's callbacks: LangGraph's `stream_mode="messages"` (and `astream_events`) listen to model
tokens through a streaming callback handler.

`RouteWalk` holds the policy, shared by the sync and async nodes (`run` and `arun` differ only in how they
wait).
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from coe_router.config import ExpertSpec
from coe_router.redact import redact
from coe_router.routing.context_window import ContextWindowError, QueryTooLongError
from coe_router.routing.expert_call import ToolsUnsupportedError
from coe_router.routing.tool_specs import InvalidToolsError
from coe_router.routing.time_budget import (
    MAX_RETRY_WAIT_WITH_FALLBACK_S,
    RESERVE_SHARE,
    AttemptClock,
    AttemptPolicy,
    request_deadline,
)

COOLING_DOWN = "skipped: cooling down"


class ExpertsFailedError(RuntimeError):
    """Every expert on the route failed; `errors` maps each expert tried to why."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        tried = "; ".join(f"{name}: {why}" for name, why in errors.items())
        super().__init__(f"all {len(errors)} experts failed: {tried}")


class ExpertsUnavailableError(ExpertsFailedError):
    """Every expert on the route is cooling down after repeated failures: nothing was tried.
    `retry_after_s` says when the first of them will be probed again."""

    def __init__(self, errors: dict[str, str], retry_after_s: float):
        super().__init__(errors)
        self.retry_after_s = retry_after_s


class AnswerInterruptedError(RuntimeError):
    """An expert failed after some of its answer had been streamed to the caller: the tokens received are a
    partial answer of `expert`, and no other expert's text was added to them."""

    def __init__(self, expert: str, reason: str, tokens: int):
        self.expert, self.reason, self.tokens = expert, reason, tokens
        super().__init__(f"expert {expert!r} failed after streaming {tokens} tokens of its answer, which is "
                         f"incomplete: {reason}")


class RequestCancelled(RuntimeError):
    """Raised inside the graph's remaining work once its request is over (client gone, deadline passed)."""


@dataclass
class Attempt:
    expert: str
    spec: ExpertSpec | None
    model: BaseChatModel
    clock: AttemptClock
    seen_by_caller: bool
    number: int = 1
    tokens: int = 0

    def token(self) -> None:
        """One content or tool-call chunk of the answer arrived."""
        self.tokens += 1
        if self.tokens == 1:
            self.clock.first_token(self.seen_by_caller)


def write_answer(role: str, chat, model: BaseChatModel, messages: list, run_config: dict,
                 node_config: dict | None) -> tuple[AIMessage | None, str | None]:
    """(reply, None) from a model that writes the final answer from others' (the fan-out's refine step, the
    plan's synthesizer), within the default time budget; (None, why) when it failed before the caller saw any of
    its tokens (the node then keeps an answer it already has); after that, `AnswerInterruptedError` names `role`."""
    from coe_router.routing.expert_call import stream_reply

    policy = AttemptPolicy()
    deadline = request_deadline(node_config)
    clock = AttemptClock(policy.first_token_s, policy.answer_s, hard_deadline=deadline, request_deadline=deadline)
    attempt = Attempt(role, None, model, clock, streams_to_caller(node_config))
    try:
        return stream_reply(chat, model, messages, run_config, attempt), None
    except RequestCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - the answer it would refine is there already
        if attempt.tokens and attempt.seen_by_caller:
            raise AnswerInterruptedError(role, describe(exc), attempt.tokens) from exc
        return None, describe(exc)


def streams_to_caller(config: dict | None) -> bool:
    """Whether the run's model tokens reach someone as they arrive (a message stream or an event stream)."""
    callbacks = (config or {}).get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks) or []
    return any(isinstance(handler, _StreamingCallbackHandler) for handler in handlers)


def status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def is_request_fault(exc: BaseException) -> bool:
    """The request's own fault, which says nothing about the expert's health."""
    refused = (ContextWindowError, ToolsUnsupportedError, InvalidToolsError, RequestCancelled)
    return isinstance(exc, refused) or status_of(exc) in (400, 413, 422)


def retry_after_s(exc: BaseException) -> float | None:
    """The upstream's Retry-After (seconds or an HTTP date), if it sent one."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _transient(exc: BaseException) -> bool:
    """Worth one more try: refused or reset connections, 429, 5xx. Not timeouts: that budget is spent."""
    status = status_of(exc)
    if status is not None:
        return status == 429 or status >= 500
    name = type(exc).__name__
    return "Connection" in name and "Timeout" not in name


_SHORT_CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def describe(exc: BaseException) -> str:
    """Why an attempt failed, for decisions, errors and logs. An upstream's error body never passes through (it
    may echo the caller's key in forms no redaction knows: URL-encoded, base64, cut): its HTTP status and, when it
    is a short identifier, its error code."""
    status, body = status_of(exc), getattr(exc, "body", None)
    if status is None and not isinstance(body, dict):  # not an upstream's answer: our own or the transport's words
        return redact(f"{type(exc).__name__}: {exc}")
    body = body.get("error", body) if isinstance(body, dict) else None
    code = next((str(body[key]) for key in ("code", "type") if isinstance(body, dict) and body.get(key)), "")
    short = f" ({code})" if _SHORT_CODE.fullmatch(code) else ""
    said = f"answered HTTP {status}" if status is not None else "sent an error event"
    return redact(f"{type(exc).__name__}: the upstream {said}{short}")


class RouteWalk:
    """One request's way down a route. `next()` gives the next attempt (None when the route is exhausted),
    `failed()` records a failure and says whether to wait and retry, `succeeded()` closes the attempt."""

    def __init__(self, pool, names: Sequence[str], config: dict | None):
        self.pool = pool
        self.queue = list(dict.fromkeys(names))
        self.deadline = request_deadline(config)
        self.seen_by_caller = streams_to_caller(config)
        self.errors: dict[str, str] = {}
        self.failures: dict[str, Exception] = {}
        self.cooling: list[str] = []  # models skipped by their open breaker
        self._retry: Attempt | None = None

    def next(self) -> Attempt | None:
        if self._retry is not None:
            previous, self._retry = self._retry, None
            return self._attempt(previous.expert, previous.spec, previous.model, previous.number + 1)
        while self.queue:
            name = self.queue.pop(0)
            try:
                spec, model = self.pool.expert(name)
            except KeyError as exc:  # removed from the pool since routing
                self.errors[name], self.failures[name] = describe(exc), exc
                continue
            if not self.pool.breakers.of(spec.model).admit():
                self.errors[name] = COOLING_DOWN
                self.cooling.append(spec.model)
                continue
            return self._attempt(name, spec, model, 1)
        return None

    def _attempt(self, name: str, spec: ExpertSpec, model: BaseChatModel, number: int) -> Attempt:
        policy = self.pool.policy(spec.model)
        now = time.monotonic()
        hard = self.deadline if not self.queue else now + (self.deadline - now) * RESERVE_SHARE
        clock = AttemptClock(policy.first_token_s, policy.answer_s, hard_deadline=hard,
                             request_deadline=self.deadline, started=now)
        return Attempt(name, spec, model, clock, self.seen_by_caller, number)

    def failed(self, attempt: Attempt, exc: Exception) -> float | None:
        """Record why `attempt` failed; returns the seconds to wait before retrying it, or None to move on.
        Raises `AnswerInterruptedError` when the caller already has some of its tokens."""
        if isinstance(exc, RequestCancelled):
            raise exc
        reason = describe(exc)
        if not is_request_fault(exc):
            wait = retry_after_s(exc) if status_of(exc) == 429 else None
            self.pool.breakers.of(attempt.spec.model).failed(reason, wait)
        if attempt.tokens and attempt.seen_by_caller:
            raise AnswerInterruptedError(attempt.expert, reason, attempt.tokens) from exc
        self.errors[attempt.expert], self.failures[attempt.expert] = reason, exc
        policy = self.pool.policy(attempt.spec.model)
        if not _transient(exc) or attempt.number > policy.max_retries:
            return None
        wait = retry_after_s(exc) or 0.25 * 2 ** (attempt.number - 1)
        if self.queue and wait > MAX_RETRY_WAIT_WITH_FALLBACK_S:
            return None  # the fallback answers sooner than the wait
        if time.monotonic() + wait + policy.first_token_s > attempt.clock.hard_deadline:
            return None
        self._retry = attempt
        return wait

    def run(self, ask: Callable[[Attempt], Any]) -> tuple[Attempt, Any] | None:
        """Walk the route with `ask(attempt)` (sync): the attempt that answered and its answer, or None."""
        while (attempt := self.next()) is not None:
            try:
                answer = ask(attempt)
            except Exception as exc:  # noqa: BLE001 - any failure of one expert moves on to the next
                if (wait := self.failed(attempt, exc)) is not None:
                    time.sleep(wait)
                continue
            self.succeeded(attempt)
            return attempt, answer
        return None

    async def arun(self, ask: Callable[[Attempt], Awaitable[Any]]) -> tuple[Attempt, Any] | None:
        """`run` on the event loop: waits are `asyncio.sleep`, a hung attempt holds no thread."""
        while (attempt := self.next()) is not None:
            try:
                answer = await ask(attempt)
            except Exception as exc:  # noqa: BLE001 - any failure of one expert moves on to the next
                if (wait := self.failed(attempt, exc)) is not None:
                    await asyncio.sleep(wait)
                continue
            self.succeeded(attempt)
            return attempt, answer
        return None

    def succeeded(self, attempt: Attempt) -> None:
        self.pool.breakers.of(attempt.spec.model).succeeded()
        self.errors.pop(attempt.expert, None)
        self.failures.pop(attempt.expert, None)

    @property
    def tried(self) -> list[str]:
        return [name for name, why in self.errors.items() if why != COOLING_DOWN]

    def error(self) -> Exception:
        """The error for a route on which no expert answered."""
        if self.errors and all(why == COOLING_DOWN for why in self.errors.values()):
            waits = [self.pool.breakers.of(model).snapshot().get("retry_in_s", 0.0) for model in self.cooling]
            return ExpertsUnavailableError(dict(self.errors), max(min(waits, default=1.0), 1.0))
        return no_expert_could(self.failures, self.errors)


def no_expert_could(failures: dict[str, Exception], errors: dict[str, str] | None = None) -> Exception:
    """The error for a route on which every expert failed: the request's own fault when every expert refused it
    for the same reason (too long for every context window, tools none can be given or call), else the
    experts'."""
    if failures and all(isinstance(exc, ContextWindowError) for exc in failures.values()):
        return QueryTooLongError("the query is too long for every expert: " + "; ".join(map(str, failures.values())))
    if failures and all(isinstance(exc, InvalidToolsError) for exc in failures.values()):
        return next(iter(failures.values()))
    if failures and all(isinstance(exc, ToolsUnsupportedError) for exc in failures.values()):
        return ToolsUnsupportedError("no expert on the route can call tools: " + "; ".join(map(str, failures.values())))
    return ExpertsFailedError(errors if errors is not None else {n: describe(e) for n, e in failures.items()})


def walk_result(walk: RouteWalk, attempt: Attempt) -> dict[str, Any]:
    """What the node records of a successful walk: who answered, who was tried, and why the others failed."""
    return {"expert": attempt.expert, "tried": [*walk.tried, attempt.expert], "errors": dict(walk.errors)}
