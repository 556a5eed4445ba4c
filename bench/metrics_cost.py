"""What the Prometheus metrics add to each request: `ServiceMetrics.observe` for one finished request (a
decision with one fallback, two callers' tokens and costs) and one scrape of the registry after that traffic,
medians over many repetitions. The request path pays `observe` plus two gauge updates (in flight)."""

from __future__ import annotations

import time

import numpy as np

from coe_router.schema import RoutingDecision
from coe_router.serve.metrics import ServiceMetrics


def run(requests: int = 20_000) -> dict:
    metrics = ServiceMetrics(lambda: {"m-a": {"state": "closed"}, "m-b": {"state": "open"}})
    decision = RoutingDecision(task="math", confidence=0.9, classifier="knn", expert="answerer",
                               fallbacks=["answerer"], errors={"failing": "APIStatusError: the upstream answered HTTP 500"})
    by_model = {"answerer": [120, 48], "classifier-model": [30, 1]}
    cost = {"dollars": 0.0003, "by_model": {"answerer": 0.0003, "classifier-model": None}, "unpriced": []}
    per_request = []
    for _ in range(requests):
        start = time.perf_counter()
        metrics.in_flight.inc()
        metrics.in_flight.dec()
        metrics.observe(shape="json", status=200, decision=decision, by_model=by_model, cost=cost, decided_s=0.02,
                        first_s=None, total_s=0.4)
        per_request.append(time.perf_counter() - start)
    scrapes = []
    for _ in range(200):
        start = time.perf_counter()
        metrics.render()
        scrapes.append(time.perf_counter() - start)
    return {"requests": requests, "observe_us_p50": round(float(np.median(per_request)) * 1e6, 1),
            "observe_us_p95": round(float(np.percentile(per_request, 95)) * 1e6, 1),
            "scrape_ms_p50": round(float(np.median(scrapes)) * 1e3, 3)}


if __name__ == "__main__":
    print(run())
