"""Operating a real `coe serve`: Prometheus metrics after traffic, the cost of each answer, and experts added and
removed over the admin API (the Grafana dashboard is checked against a keyed service's scrape, in
tests/integration/test_key_limits.py). The experts are a real OpenAI-compatible process (tests/service_upstream.py);
the service runs with its default timeouts."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service_upstream import CoeServe, Upstream

pytestmark = pytest.mark.integration
TOKEN = "coe-ops-token-51c2"
ADMIN = "coe-ops-admin-9e07"
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
                       env={"COE_OPS_TOKEN": TOKEN, "COE_ADMIN_TOKEN": ADMIN}).start()
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


def _admin(service, token: str | None = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"authorization": f"Bearer {token}"} if token else {},
                        timeout=30)


def _routed(service, content: str) -> str:
    raw = _client(service).chat.completions.with_raw_response.create(
        model="coe", messages=[{"role": "user", "content": content}])
    return raw.headers["x-coe-expert"]


def test_the_admin_api_has_its_own_token(service):
    assert httpx.get(f"{service.url}/admin/experts").status_code == 401
    assert _admin(service, TOKEN).get("/admin/experts").status_code == 401  # the API token does not open it
    listed = _admin(service).get("/admin/experts").json()["experts"]
    assert {row["expert"] for row in listed} >= {"answerer", "failing", "unpriced"}


def test_an_expert_added_over_http_serves_the_next_request_and_can_be_written_back(service):
    from coe_router.config import load_config

    admin = _admin(service)
    assert _routed(service, "the roman senate") == "answerer"
    added = admin.post("/admin/experts", json={"name": "historian", "model": "m-free", "tasks": ["history"],
                                               "rank": 0, "style": "plain", "write_config": True})
    assert added.status_code == 200, added.text
    assert added.json()["tasks"] == {"history": 1}
    assert _routed(service, "the roman senate") == "historian"
    assert "coe/historian" in [m.id for m in _client(service).models.list()]
    written = load_config(service.config_path)
    assert written.experts["historian"].model == "m-free" and written.task_map["history"][0] == "historian"

    remapped = admin.put("/admin/task-map/history", json={"experts": ["answerer", "historian"]})
    assert remapped.json() == {"task": "history", "experts": ["answerer", "historian"]}
    assert _routed(service, "the roman senate") == "answerer"

    assert admin.delete("/admin/experts/historian", params={"write_config": "true"}).status_code == 200
    assert "coe/historian" not in [m.id for m in _client(service).models.list()]
    assert "historian" not in load_config(service.config_path).experts
    assert admin.delete("/admin/experts/historian").status_code == 404


@pytest.mark.parametrize("body, status, param", [
    ({"name": "x", "model": "no-such-model"}, 400, "model"),
    ({"name": "x", "model": "m-free", "tasks": ["astrology"]}, 400, "tasks"),
    ({"name": "answerer", "model": "m-free"}, 409, "name"),
    ({"name": "bad name!", "model": "m-free"}, 400, "name"),
    ({"name": "x", "model": "m-free", "colour": "red"}, 400, "colour"),
])
def test_an_invalid_expert_is_refused_naming_the_field(service, body, status, param):
    answer = _admin(service).post("/admin/experts", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["param"] == param
    assert "x" not in {row["expert"] for row in _admin(service).get("/admin/experts").json()["experts"]}
