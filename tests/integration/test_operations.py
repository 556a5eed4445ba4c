"""Operating a real `coe serve`: Prometheus metrics after traffic, the cost of each answer, and the Grafana
dashboard in deploy/ naming only metrics a real scrape has. The experts are a real OpenAI-compatible process
(tests/service_upstream.py); the service runs with its default timeouts."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from coe_router.serve.metrics import METRICS
from tests.service_upstream import CoeServe, Upstream

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "coe-ops-token-51c2"
PRICES = {"in": 2.0, "out": 6.0}  # the answering model, dollars per 1M tokens


def _model(mode: str, url: str, **extra) -> dict:
    return {"provider": "openai", "model": mode, "base_url": url, "max_retries": 0, **extra}


def ops_config(up: Upstream) -> dict:
    return {
        "models": {"m-answer": _model("answer", up.url, input_price_per_1m_tokens=PRICES["in"],
                                      output_price_per_1m_tokens=PRICES["out"]),
                   "m-500": _model("status:500", up.url, price_per_1m_tokens=1.0),
                   "m-free": _model("say:an answer nobody priced", up.url)},
        "tasks": {"math": "maths", "history": "the past"},
        "experts": {"answerer": {"model": "m-answer", "style": "plain"}, "failing": {"model": "m-500"},
                    "unpriced": {"model": "m-free", "style": "plain"}},
        "task_map": {"math": ["failing", "answerer"], "history": ["answerer"]},
        "classifier": {"kind": "rules", "rules": {"math": ["integral"], "history": ["roman"]}},
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops")
    with Upstream() as up:
        coe = CoeServe(ops_config(up), folder, "ops", args=("--token-env", "COE_OPS_TOKEN"),
                       env={"COE_OPS_TOKEN": TOKEN}).start()
        try:
            coe.wait()
            yield coe
        finally:
            coe.stop()


def _client(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=TOKEN, max_retries=0)


def _scrape(service) -> dict[str, dict]:
    """{sample name: {frozenset(labels): value}} of one scrape."""
    text = httpx.get(f"{service.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def _value(samples: dict, name: str, **labels) -> float:
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


def test_each_answer_carries_its_cost_in_the_body_and_a_header(service):
    raw = _client(service).chat.completions.with_raw_response.create(
        model="coe", messages=[{"role": "user", "content": "who was the first roman emperor?"}])
    answer = raw.parse()
    usage = answer.usage
    expected = (usage.prompt_tokens * PRICES["in"] + usage.completion_tokens * PRICES["out"]) / 1e6
    cost = answer.model_extra["coe"]["cost"]
    assert cost["dollars"] == pytest.approx(expected, abs=1e-9) and cost["unpriced"] == []
    assert float(raw.headers["x-coe-cost"]) == pytest.approx(expected, abs=1e-9)


def test_a_stream_ends_with_its_cost(service):
    chunks = list(_client(service).chat.completions.create(
        model="coe", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "tell me about roman roads"}]))
    closing = next(c for c in chunks if (c.model_extra or {}).get("coe"))
    usage = chunks[-1].usage
    expected = (usage.prompt_tokens * PRICES["in"] + usage.completion_tokens * PRICES["out"]) / 1e6
    assert closing.model_extra["coe"]["cost"]["dollars"] == pytest.approx(expected, abs=1e-9)


def test_an_unpriced_model_is_named_not_counted_as_free(service):
    raw = _client(service).chat.completions.with_raw_response.create(
        model="coe/unpriced", messages=[{"role": "user", "content": "who built the roman forum?"}])
    cost = raw.parse().model_extra["coe"]["cost"]
    assert cost["dollars"] is None and cost["unpriced"] == ["unpriced"]
    assert raw.headers["x-coe-cost"] == "unpriced:unpriced"


def test_metrics_after_traffic_count_what_happened(service):
    before = _scrape(service)
    client = _client(service)
    costs = 0.0
    for _ in range(3):  # math goes to `failing` (HTTP 500) first, then falls back to `answerer`
        raw = client.chat.completions.with_raw_response.create(
            model="coe", messages=[{"role": "user", "content": "what is the integral of x squared?"}])
        assert raw.headers["x-coe-fallbacks"] == "answerer"
        costs += float(raw.headers["x-coe-cost"])
    list(client.chat.completions.create(model="coe", stream=True,
                                        messages=[{"role": "user", "content": "roman history please"}]))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="coe/nobody", messages=[{"role": "user", "content": "hi"}])
    after = _scrape(service)

    def grew(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("coe_requests_total", expert="answerer", task="math", shape="json", status="200") == 3
    assert grew("coe_requests_total", expert="answerer", task="history", shape="stream", status="200") == 1
    assert grew("coe_requests_total", status="404") == 1
    assert grew("coe_fallbacks_total", expert="failing", reason="server_error") == 3
    assert grew("coe_routing_decision_seconds_count") == 4
    assert grew("coe_time_to_first_token_seconds_count", shape="stream") == 1
    assert grew("coe_request_seconds_count") == 5
    assert grew("coe_tokens_total", model="answerer", kind="output") > 0
    assert grew("coe_cost_dollars_total", model="answerer") >= costs - 1e-9
    assert _value(after, "coe_in_flight_requests") == 0
    assert _value(after, "coe_breaker_state", model="m-500", state="closed") \
        + _value(after, "coe_breaker_state", model="m-500", state="open") == 1


def test_metrics_need_the_api_token(service):
    assert httpx.get(f"{service.url}/metrics").status_code == 401


def test_the_dashboard_and_prometheus_config_name_only_real_metrics(service):
    scraped = set(_scrape(service))
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "coe-router-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {token for expr in exprs for token in _metric_names(expr)}
    assert named and named <= scraped, named - scraped
    assert {name.removesuffix("_total") for name in METRICS} <= {n.removesuffix("_total") for n in named | set(METRICS)}
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"


def _metric_names(expr: str) -> set[str]:
    import re

    return set(re.findall(r"\bcoe_[a-z_]+", expr))
