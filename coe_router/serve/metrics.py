"""Prometheus metrics of `coe serve` at GET /metrics (behind the API token when one is set).

What an operator asks of a router: where the traffic goes (requests by expert, task, shape and status), how long
deciding, the first token and the whole answer take, what it costs (tokens and dollars by model; calls of
unpriced models counted apart), how often experts fail over and why, which breakers are open, and how many
requests are in flight; with API keys (serve/keys.py), each key's requests, tokens, dollars and rate-limit refusals,
labelled by the key's name (never its secret). Replicas are scraped one by one; workers of one host that share
$PROMETHEUS_MULTIPROC_DIR are summed by prometheus-client's multi-process collector.

Every metric name is in `METRICS`; deploy/grafana/coe-router-dashboard.json plots only those (tests/integration checks it
against a real scrape).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BREAKER_STATES = ("closed", "open", "half_open")
METRICS = ("coe_requests_total", "coe_routing_decision_seconds", "coe_time_to_first_token_seconds",
           "coe_request_seconds", "coe_tokens_total", "coe_cost_dollars_total", "coe_unpriced_calls_total",
           "coe_fallbacks_total", "coe_in_flight_requests", "coe_breaker_state", "coe_key_requests_total",
           "coe_key_tokens_total", "coe_key_spend_dollars_total", "coe_key_rate_limited_total")

_REASONS = (  # the failure reasons a fallback is counted under, read off the attempt's description
    ("cooling_down", re.compile(r"cooling down")),
    ("timeout", re.compile(r"timed? ?out|timeout|deadline|idle", re.I)),
    ("rate_limited", re.compile(r"HTTP 429")),
    ("server_error", re.compile(r"HTTP 5\d\d")),
    ("client_error", re.compile(r"HTTP 4\d\d")),
    ("interrupted", re.compile(r"interrupt|closed|incomplete|mid-stream", re.I)),
    ("connection", re.compile(r"connect", re.I)),
)


def failure_reason(description: str) -> str:
    return next((reason for reason, pattern in _REASONS if pattern.search(description)), "error")


class _Breakers:
    """coe_breaker_state{model, state}: 1 for each model's current breaker state, read at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, dict]]):
        self.snapshot = snapshot

    def collect(self):
        family = GaugeMetricFamily("coe_breaker_state", "circuit breaker state of each model (1 = current)",
                                   labels=["model", "state"])
        for model, view in self.snapshot().items():
            for state in BREAKER_STATES:
                family.add_metric([model, state], 1.0 if view.get("state") == state else 0.0)
        yield family


class ServiceMetrics:
    """The service's metrics in a registry of their own (several apps in one process do not collide)."""

    def __init__(self, breakers: Callable[[], dict[str, dict]] = dict):
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coe_requests", "answers by answering expert, task, shape "
                                "(json, stream, resume) and status",
                                ["expert", "task", "shape", "status"], registry=r)
        self.decision = Histogram("coe_routing_decision_seconds", "request start to the router's decision",
                                  buckets=SECONDS, registry=r)
        self.first_token = Histogram("coe_time_to_first_token_seconds", "request start to the first answer byte "
                                     "(streams) or the whole answer", ["shape"], buckets=SECONDS, registry=r)
        self.latency = Histogram("coe_request_seconds", "request start to its last byte", ["shape"],
                                 buckets=SECONDS, registry=r)
        self.tokens = Counter("coe_tokens", "tokens of every model call, by caller (expert or model id)",
                              ["model", "kind"], registry=r)
        self.cost = Counter("coe_cost_dollars", "dollars of priced model calls, by caller", ["model"], registry=r)
        self.unpriced = Counter("coe_unpriced_calls", "requests that called a model without a price", ["model"],
                                registry=r)
        self.fallbacks = Counter("coe_fallbacks", "experts that failed and were passed over, by reason",
                                 ["expert", "reason"], registry=r)
        self.in_flight = Gauge("coe_in_flight_requests", "answers in progress (completions, resumes)", registry=r,
                               multiprocess_mode="livesum")
        self.key_requests = Counter("coe_key_requests", "requests by API key name and status", ["key", "status"],
                                    registry=r)
        self.key_tokens = Counter("coe_key_tokens", "tokens of every model call, by API key name", ["key"], registry=r)
        self.key_spend = Counter("coe_key_spend_dollars", "dollars of priced answers, by API key name", ["key"],
                                 registry=r)
        self.key_limited = Counter("coe_key_rate_limited", "requests refused with 429, by API key name and limit "
                                   "(rpm, tpm)", ["key", "limit"], registry=r)
        self._breakers = _Breakers(breakers)
        if not self.multiprocess_dir:
            r.register(self._breakers)

    def observe(self, *, shape: str, status: int, decision=None, by_model: dict[str, list[int]] | None = None,
                cost: dict | None = None, decided_s: float | None = None, first_s: float | None = None,
                total_s: float) -> None:
        """One finished request."""
        expert = getattr(decision, "expert", "") or ""
        self.requests.labels(expert, getattr(decision, "task", "") or "", shape, str(status)).inc()
        self.latency.labels(shape).observe(total_s)
        if decided_s is not None:
            self.decision.observe(decided_s)
        if status < 400:
            self.first_token.labels(shape).observe(first_s if first_s is not None else total_s)
        for failed, description in (getattr(decision, "errors", None) or {}).items():
            self.fallbacks.labels(failed, failure_reason(description)).inc()
        for caller, (tokens_in, tokens_out) in (by_model or {}).items():
            self.tokens.labels(caller, "input").inc(tokens_in)
            self.tokens.labels(caller, "output").inc(tokens_out)
        for caller, dollars in ((cost or {}).get("by_model") or {}).items():
            if dollars is None:
                self.unpriced.labels(caller).inc()
            else:
                self.cost.labels(caller).inc(dollars)

    def observe_key(self, key: str, *, status: int) -> None:
        """One answered API call of the key named `key` (its HTTP status; 429 when a limit refused it)."""
        self.key_requests.labels(key, str(status)).inc()

    def key_spent(self, key: str, *, tokens: int, dollars: float) -> None:
        """What one answer (a completion or a resume) of the key named `key` used: its model calls' tokens and
        priced dollars."""
        self.key_tokens.labels(key).inc(tokens)
        self.key_spend.labels(key).inc(dollars)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self._breakers)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
