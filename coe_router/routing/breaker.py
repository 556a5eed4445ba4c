"""Circuit breakers: an expert that keeps failing is skipped for a cooldown instead of costing every request an
attempt, then probed once and restored when the probe answers.

The classic breaker with LiteLLM's knobs (`allowed_fails`, `cooldown_time`): after `allowed_fails` failures in a
row a model's breaker opens and the router skips it ("skipped: cooling down"); after `cooldown_s` one request is
let through (half-open); its success closes the breaker, its failure opens it again. A 429 with `Retry-After`
opens it at once for that long: the upstream said when to come back. Failures that are the request's fault (a
400, a query too long for the window, tools the model cannot call) say nothing about the model and do not count.

Breakers are per model (the endpoint that fails), shared by the experts on it, and live as long as the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerSettings:
    allowed_fails: int = 3
    cooldown_s: float = 30.0


class Breaker:
    def __init__(self, settings: BreakerSettings = BreakerSettings(), clock: Callable[[], float] = time.monotonic):
        self.settings, self._clock = settings, clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._probe_since: float | None = None
        self.last_error = ""

    def admit(self) -> bool:
        """May a request try this model now? In half-open, only one probe at a time (a probe whose request
        vanished without an outcome is replaced after a cooldown)."""
        with self._lock:
            now = self._clock()
            if self._state == "closed":
                return True
            if self._state == "open" and now < self._open_until:
                return False
            if self._probe_since is not None and now - self._probe_since < self.settings.cooldown_s:
                return False
            self._state, self._probe_since = "half_open", now
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._state, self._failures, self._probe_since = "closed", 0, None

    def failed(self, reason: str, retry_after_s: float | None = None) -> None:
        with self._lock:
            self._failures += 1
            self.last_error = reason
            opens = self._state == "half_open" or self._failures >= self.settings.allowed_fails or retry_after_s
            if opens:
                self._state, self._probe_since = "open", None
                self._open_until = self._clock() + max(self.settings.cooldown_s if not retry_after_s else 0.0,
                                                       retry_after_s or 0.0)

    def snapshot(self) -> dict:
        with self._lock:
            state = self._state
            if state == "open" and self._clock() >= self._open_until:
                state = "half_open"  # the next request probes it
            view: dict = {"state": state, "consecutive_failures": self._failures}
            if state == "open":
                view["retry_in_s"] = round(self._open_until - self._clock(), 1)
            if self.last_error and state != "closed":
                view["last_error"] = self.last_error
            return view


class Breakers:
    """One breaker per model, made on first use with that model's settings."""

    def __init__(self, settings: dict[str, BreakerSettings] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._settings = dict(settings or {})
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        self._lock = threading.Lock()

    def of(self, model: str) -> Breaker:
        with self._lock:
            if model not in self._breakers:
                self._breakers[model] = Breaker(self._settings.get(model, BreakerSettings()), self._clock)
            return self._breakers[model]

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            breakers = dict(self._breakers)
        return {model: breaker.snapshot() for model, breaker in sorted(breakers.items())}
