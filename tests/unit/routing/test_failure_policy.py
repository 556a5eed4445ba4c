"""The failure policy's parts on their own: the breaker's states, the attempt clock's phases, the route walk's
retry and skip decisions, and the stream rule (fall back invisibly, or raise once the caller has tokens)."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from coe_router import AnswerInterruptedError, ExpertsUnavailableError, TruncatedAnswerError
from coe_router.config import ExpertSpec
from coe_router.routing.breaker import Breaker, Breakers, BreakerSettings
from coe_router.routing.fallback import COOLING_DOWN, RouteWalk, retry_after_s
from coe_router.routing.pool import ExpertPool
from coe_router.routing.task_map import TaskMap
from coe_router.routing.time_budget import DEADLINE_KEY, AttemptClock, AttemptPolicy, AttemptTimeout
from tests.fakes import ScriptedChat


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_allowed_fails_probes_once_and_closes_on_success():
    clock = Clock()
    breaker = Breaker(BreakerSettings(allowed_fails=3, cooldown_s=30), clock)
    for _ in range(2):
        breaker.failed("boom")
        assert breaker.admit()
    breaker.failed("boom")
    assert not breaker.admit() and breaker.snapshot()["state"] == "open"
    assert breaker.snapshot()["retry_in_s"] == 30 and breaker.snapshot()["last_error"] == "boom"
    clock.now += 30
    assert breaker.admit()            # the probe
    assert not breaker.admit()        # one probe at a time
    breaker.succeeded()
    assert breaker.admit() and breaker.snapshot() == {"state": "closed", "consecutive_failures": 0}


def test_a_failed_probe_opens_again_and_a_vanished_probe_is_replaced():
    clock = Clock()
    breaker = Breaker(BreakerSettings(allowed_fails=1, cooldown_s=10), clock)
    breaker.failed("boom")
    clock.now += 10
    assert breaker.admit()
    breaker.failed("still down")
    assert not breaker.admit()
    clock.now += 10
    assert breaker.admit()            # a probe whose request never reported back...
    clock.now += 10
    assert breaker.admit()            # ...is replaced after a cooldown


def test_retry_after_opens_the_breaker_for_that_long():
    clock = Clock()
    breaker = Breaker(BreakerSettings(allowed_fails=3, cooldown_s=5), clock)
    breaker.failed("429", retry_after_s=50)
    clock.now += 49
    assert not breaker.admit()
    clock.now += 1
    assert breaker.admit()


def test_the_clock_gives_the_first_token_its_budget_then_the_answer_or_the_request_deadline():
    clock = AttemptClock(first_token_s=10, answer_s=60, hard_deadline=math.inf, request_deadline=math.inf,
                         started=1000.0)
    assert clock.deadline == 1010
    clock.first_token(seen_by_caller=False)
    assert clock.deadline == 1060
    seen = AttemptClock(first_token_s=10, answer_s=60, request_deadline=1100, started=1000.0)
    seen.first_token(seen_by_caller=True)
    assert 1100 < seen.deadline < 1102  # the request's deadline (a little after, so the service reports it)
    late = AttemptClock(first_token_s=10, answer_s=60, started=time.monotonic() - 11)
    with pytest.raises(AttemptTimeout, match="first token"):
        late.check()


def test_an_attempt_with_fallbacks_takes_at_most_half_the_time_left():
    pool = _pool()
    walk = RouteWalk(pool, ["a", "b"], {"configurable": {DEADLINE_KEY: time.monotonic() + 8}})
    attempt = walk.next()
    assert attempt.clock.hard_deadline - time.monotonic() == pytest.approx(4, abs=0.1)
    assert attempt.clock.deadline - time.monotonic() == pytest.approx(4, abs=0.1)  # under the 10 s first token


def _pool(**policies) -> ExpertPool:
    experts = {name: ExpertSpec(model=f"m{name}") for name in "abc"}
    models = {f"m{name}": ScriptedChat(reply=lambda p: "ok", seen=[]) for name in "abc"}
    return ExpertPool(experts, models, TaskMap(ranking={}, default_expert="a"), policies=policies,
                      breakers=Breakers({f"m{name}": BreakerSettings(allowed_fails=2) for name in "abc"}))


def _status_error(status: int, retry_after: str | None = None):
    import openai

    headers = {"retry-after": retry_after} if retry_after else {}
    response = httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x/v1/chat"))
    kind = openai.RateLimitError if status == 429 else openai.InternalServerError
    return kind("upstream said no", response=response, body=None)


def test_a_long_retry_after_is_not_waited_for_when_a_fallback_exists():
    walk = RouteWalk(_pool(), ["a", "b"], {})
    attempt = walk.next()
    assert walk.failed(attempt, _status_error(429, "50")) is None
    assert walk.next().expert == "b"
    assert retry_after_s(_status_error(429, "50")) == 50


def test_a_short_wait_is_retried_and_the_last_expert_waits_while_it_fits():
    walk = RouteWalk(_pool(), ["a", "b"], {})
    attempt = walk.next()
    assert walk.failed(attempt, _status_error(500)) == 0.25
    assert walk.next().expert == "a"          # the retry
    last = RouteWalk(_pool(), ["a"], {"configurable": {DEADLINE_KEY: time.monotonic() + 120}})
    assert last.failed(last.next(), _status_error(429, "5")) == 5
    short = RouteWalk(_pool(), ["a"], {"configurable": {DEADLINE_KEY: time.monotonic() + 6}})
    assert short.failed(short.next(), _status_error(429, "5")) is None   # 5 s + a first token do not fit in 6


def test_timeouts_are_not_retried_and_request_faults_do_not_count_against_the_breaker():
    pool = _pool()
    walk = RouteWalk(pool, ["a", "b"], {})
    assert walk.failed(walk.next(), AttemptTimeout("no first token")) is None
    for _ in range(3):
        walk = RouteWalk(pool, ["b"], {})
        walk.failed(walk.next(), _status_error(400))
    assert pool.breakers.of("mb").admit()


def test_cooling_experts_are_skipped_and_a_route_of_only_cooling_experts_is_unavailable():
    pool = _pool()
    for _ in range(2):
        walk = RouteWalk(pool, ["a"], {})
        walk.failed(walk.next(), _status_error(500, None))
    walk = RouteWalk(pool, ["a", "b"], {})
    assert walk.next().expert == "b" and walk.errors == {"a": COOLING_DOWN}
    only = RouteWalk(pool, ["a"], {})
    assert only.next() is None
    error = only.error()
    assert isinstance(error, ExpertsUnavailableError) and error.retry_after_s >= 1


def test_a_failure_after_tokens_reached_the_caller_is_raised_not_fallen_back():
    from langchain_core.tracers._streaming import _StreamingCallbackHandler

    class Listener(_StreamingCallbackHandler):
        def tap_output_aiter(self, run_id, output):
            return output

        def tap_output_iter(self, run_id, output):
            return output

    walk = RouteWalk(_pool(), ["a", "b"], {"callbacks": [Listener()]})
    attempt = walk.next()
    assert attempt.seen_by_caller
    attempt.token()
    with pytest.raises(AnswerInterruptedError, match="'a' failed after streaming 1 tokens") as raised:
        walk.failed(attempt, ConnectionResetError("peer closed"))
    assert raised.value.expert == "a" and raised.value.tokens == 1
    hidden = RouteWalk(_pool(), ["a", "b"], {})
    attempt = hidden.next()
    attempt.token()
    cut = TruncatedAnswerError("no finish reason")
    assert hidden.failed(attempt, cut) is None and hidden.next().expert == "b"


def test_an_upstream_error_body_never_passes_through_in_any_form():
    import base64
    import urllib.parse

    import openai

    from coe_router.routing.fallback import describe

    key = "sk-live-" + "Ab3" * 10
    echoes = f"{key} {urllib.parse.quote(key)} {base64.b64encode(key.encode()).decode()} {key.upper()} {key[:20]}"
    response = httpx.Response(401, request=httpx.Request("POST", "http://x/v1/chat"))
    error = openai.AuthenticationError(f"Incorrect API key provided: {echoes}", response=response,
                                       body={"error": {"message": echoes, "code": "invalid_api_key"}})
    why = describe(error)
    assert why == "AuthenticationError: the upstream answered HTTP 401 (invalid_api_key)"
    odd = openai.InternalServerError("boom", response=httpx.Response(500, request=response.request),
                                     body={"error": {"message": "x", "code": echoes}})
    assert describe(odd) == "InternalServerError: the upstream answered HTTP 500"
    mid_stream = openai.APIError("overloaded " + key, request=response.request,
                                 body={"message": "overloaded " + key, "code": 500})
    assert describe(mid_stream) == "APIError: the upstream sent an error event (500)"
