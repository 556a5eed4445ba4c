"""A real `coe serve` tracing to LangSmith: each request's `coe-router` run carries the request's cost next to its
routing decision, the same figure as the response's `coe.cost` and `x-coe-cost`; an unpriced model's run says
unpriced. The LangSmith API is the capturing server of tests/langsmith_capture.py (nothing leaves 127.0.0.1); the
expert is a real OpenAI-compatible process (tests/service_upstream.py)."""

from __future__ import annotations

import time

import openai
import pytest

from coe_router.defaults import RUN_NAME
from tests.integration.test_operations import PRICES, ops_config
from tests.langsmith_capture import LangSmithCapture
from tests.service_upstream import CoeServe, Upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced_service(tmp_path_factory):
    with Upstream() as upstream, LangSmithCapture() as capture:
        env = {"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": capture.url, "LANGSMITH_API_KEY": "test",
               "LANGSMITH_PROJECT": "coe-trace-cost", "LANGSMITH_OTEL_ENABLED": "false"}
        coe = CoeServe(ops_config(upstream), tmp_path_factory.mktemp("trace-cost"), "traced", env=env).start()
        try:
            yield coe.wait(), capture
        finally:
            coe.stop()


def _router_run(capture: LangSmithCapture, api_model: str, timeout_s: float = 30) -> dict:
    """The one finished `coe-router` run of the requests for `api_model`, once the service's background sender
    delivered it (each test asks its model once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [run for run in capture.named(RUN_NAME)
                 if run.get("end_time") and _metadata(run).get("api_model") == api_model]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no finished {RUN_NAME} run for {api_model} in {timeout_s}s"
        time.sleep(0.2)


def _ask(url: str, model: str, content: str):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    return client.chat.completions.with_raw_response.create(model=model,
                                                            messages=[{"role": "user", "content": content}])


def _metadata(run: dict) -> dict:
    return (run.get("extra") or {}).get("metadata") or {}


def test_a_priced_answer_shows_its_dollars_on_its_run(traced_service):
    coe, capture = traced_service
    raw = _ask(coe.url, "coe", "who was the first roman emperor?")
    answer = raw.parse()
    coe_body = answer.model_extra["coe"]
    meta = _metadata(_router_run(capture, "coe"))
    usage = answer.usage
    expected = (usage.prompt_tokens * PRICES["in"] + usage.completion_tokens * PRICES["out"]) / 1e6
    assert meta["expert"] == "answerer" and meta["task"] == "history"
    assert meta["cost_dollars"] == pytest.approx(expected, abs=1e-9)
    assert float(raw.headers["x-coe-cost"]) == pytest.approx(meta["cost_dollars"], abs=1e-9)
    cost = meta["cost"]
    assert {key: cost[key] for key in ("dollars", "by_model", "unpriced")} == coe_body["cost"]
    assert cost["tokens"]["input"] == usage.prompt_tokens and cost["tokens"]["output"] == usage.completion_tokens
    assert cost["tokens"]["by_model"] == {"answerer": {"input": usage.prompt_tokens,
                                                       "output": usage.completion_tokens}}


def test_an_unpriced_answer_says_unpriced_on_its_run(traced_service):
    coe, capture = traced_service
    raw = _ask(coe.url, "coe/unpriced", "who built the roman forum?")
    assert raw.headers["x-coe-cost"] == "unpriced:unpriced"
    meta = _metadata(_router_run(capture, "coe/unpriced"))
    assert meta["expert"] == "unpriced"
    assert meta["cost_dollars"] == "unpriced"
    assert meta["cost"]["dollars"] is None and meta["cost"]["unpriced"] == ["unpriced"]
    assert meta["cost"]["tokens"]["by_model"]["unpriced"]["output"] > 0
