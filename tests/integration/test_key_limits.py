"""Per-key limits of a real `coe serve` (serve/keys.py, serve/rate_limits.py) in front of a real
OpenAI-compatible expert process (tests/service_upstream.py), called with the official `openai` client: unknown
keys refused, each key's requests and tokens per minute limited with a 429 and `Retry-After` while other keys
answer (a resumed review's tokens too), per-key metrics by name with no secret in them, the Grafana dashboard of
deploy/ querying only metrics and labels this service's scrape has (its per-key panels included), a bad keys file
refused at start, and two replicas on one PostgreSQL (pgserver) spending one shared budget. The service runs with
its default timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.replicas import postgres_server
from coe_router.serve.metrics import METRICS
from tests.integration.test_operations import PRICES, ops_config
from tests.service_upstream import CoeServe

pytestmark = pytest.mark.integration

SECRETS = {"COE_KEY_ALICE": "sk-alice-5a1c", "COE_KEY_TINY": "sk-tiny-07e2", "COE_KEY_STREAMER": "sk-streamer-3b9d",
           "COE_KEY_CAROL": "sk-carol-c4f1", "COE_KEYS_LEGACY": "sk-legacy-88aa", "COE_KEY_DASH": "sk-dash-2f6b"}
BOB = "sk-bob-by-hash-6d0e"  # given in the file by its SHA-256 only
KEYS = [
    {"name": "alice", "key_env": "COE_KEY_ALICE", "rpm": 2},
    {"name": "bob", "key_sha256": hashlib.sha256(BOB.encode()).hexdigest()},
    {"name": "tiny", "key_env": "COE_KEY_TINY", "tpm": 5},
    {"name": "streamer", "key_env": "COE_KEY_STREAMER", "tpm": 5},
    {"name": "carol", "key_env": "COE_KEY_CAROL", "rpm": 1},
    {"name": "dashboard", "key_env": "COE_KEY_DASH", "rpm": 3},
]
ROMAN = [{"role": "user", "content": "who was the first roman emperor?"}]


def _keys_file(folder, keys=KEYS):
    path = folder / "api-keys.yaml"
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def service(upstream, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    coe = CoeServe(ops_config(upstream), folder, "keys", env=SECRETS,
                   args=("--keys", str(_keys_file(folder)), "--token-env", "COE_KEYS_LEGACY")).start()
    try:
        coe.wait()
        yield coe
    finally:
        coe.stop()


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _ask(url: str, key: str, **extra):
    return _client(url, key).chat.completions.with_raw_response.create(model="coe", messages=ROMAN, **extra)


def _refused(url: str, key: str) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(url, key)
    return caught.value


def _retry_after(refusal: openai.RateLimitError) -> int:
    value = refusal.response.headers["retry-after"]
    assert value.isdigit() and 1 <= int(value) <= 60, value
    return int(value)


def test_an_unknown_key_is_a_401_and_a_named_one_answers(service):
    with pytest.raises(openai.AuthenticationError):
        _ask(service.url, "sk-nobody")
    with pytest.raises(openai.AuthenticationError):
        _ask(service.url, hashlib.sha256(BOB.encode()).hexdigest())  # the file's digest is no key
    assert httpx.get(f"{service.url}/metrics").status_code == 401
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    assert _ask(service.url, BOB).parse().choices[0].message.content
    # the single token of --token-env stays valid beside the keys file, without limits
    assert _ask(service.url, SECRETS["COE_KEYS_LEGACY"]).parse().choices[0].message.content


def test_a_key_over_its_requests_per_minute_gets_a_429_with_retry_after_while_others_answer(service):
    alice = SECRETS["COE_KEY_ALICE"]
    for _ in range(2):
        assert _ask(service.url, alice).parse().choices[0].message.content
    refusal = _refused(service.url, alice)
    assert refusal.status_code == 429 and _retry_after(refusal) >= 1
    error = refusal.response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests" and "alice" in error["message"]
    assert _ask(service.url, BOB).parse().choices[0].message.content
    _refused(service.url, alice)  # still refused: the window has not reset


def test_a_key_over_its_tokens_per_minute_is_refused_after_the_answer_that_spent_them(service):
    tiny = SECRETS["COE_KEY_TINY"]
    answer = _ask(service.url, tiny).parse()  # tpm 5: this answer is let through and uses more than that
    assert answer.usage.total_tokens > 5
    refusal = _refused(service.url, tiny)
    assert _retry_after(refusal) >= 1 and refusal.response.json()["error"]["type"] == "tokens"
    assert _ask(service.url, BOB).parse().choices[0].message.content


def test_a_streamed_answer_spends_its_keys_tokens_too(service):
    streamer = SECRETS["COE_KEY_STREAMER"]
    chunks = list(_client(service.url, streamer).chat.completions.create(
        model="coe", messages=ROMAN, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens > 5
    _retry_after(_refused(service.url, streamer))


@pytest.fixture(scope="module")
def review_service(upstream, tmp_path_factory):
    """A keyed service whose unplaceable queries pause for review (an SQLite checkpointer keeps the thread)."""
    folder = tmp_path_factory.mktemp("review")
    config = {**ops_config(upstream), "persistence": {"checkpointer": "sqlite", "path": str(folder / "threads.sqlite"),
                                                      "review_unknown": True}}
    keys = [{"name": "reviewer", "key_env": "COE_KEY_ALICE", "tpm": 5}, KEYS[1]]
    coe = CoeServe(config, folder, "review", env=SECRETS, args=("--keys", str(_keys_file(folder, keys)))).start()
    try:
        yield coe.wait()
    finally:
        coe.stop()


def test_a_resumed_run_spends_its_keys_tokens_like_any_answer(review_service):
    url, reviewer = review_service.url, SECRETS["COE_KEY_ALICE"]
    headers = {"authorization": f"Bearer {reviewer}"}
    paused = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=30, json={
        "model": "coe", "messages": [{"role": "user", "content": "zzz qqq unplaceable"}]})
    assert paused.status_code == 409, paused.text  # the rules classifier placed it nowhere and used no tokens
    thread = re.search(r"thread (\w+)", paused.json()["error"]["message"]).group(1)
    resumed = httpx.post(f"{url}/v1/threads/{thread}/resume", headers=headers, json={"expert": "answerer"},
                         timeout=30)
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    tokens = body["usage"]["total_tokens"]
    assert body["coe"]["expert"] == "answerer" and tokens > 5  # tpm 5: this answer spends more than that
    expected = (body["usage"]["prompt_tokens"] * PRICES["in"] + body["usage"]["completion_tokens"] * PRICES["out"]) / 1e6
    assert float(resumed.headers["x-coe-cost"]) == pytest.approx(expected, abs=1e-9)
    assert body["coe"]["cost"]["dollars"] == pytest.approx(expected, abs=1e-9)
    refusal = _refused(url, reviewer)  # the resumed answer's tokens are spent: the next request is refused
    assert _retry_after(refusal) >= 1 and refusal.response.json()["error"]["type"] == "tokens"
    _, samples = _scrape(url, BOB)
    assert _value(samples, "coe_key_tokens_total", key="reviewer") == tokens
    assert _value(samples, "coe_key_spend_dollars_total", key="reviewer") == pytest.approx(expected, abs=1e-9)
    assert _value(samples, "coe_key_requests_total", key="reviewer", status="200") == 1
    assert _value(samples, "coe_key_rate_limited_total", key="reviewer", limit="tpm") == 1
    assert _value(samples, "coe_requests_total", shape="resume", status="200", expert="answerer") == 1
    assert _value(samples, "coe_tokens_total", model="answerer") == tokens


def _scrape(url: str, key: str) -> tuple[str, dict]:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"}).text
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return text, samples


def _value(samples: dict, name: str, **labels) -> float:
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


def test_metrics_count_each_key_by_name_and_show_no_secret(service):
    carol = SECRETS["COE_KEY_CAROL"]
    raw = _ask(service.url, carol)
    usage, dollars = raw.parse().usage, float(raw.headers["x-coe-cost"])
    assert dollars == pytest.approx((usage.prompt_tokens * PRICES["in"] + usage.completion_tokens * PRICES["out"])
                                    / 1e6, abs=1e-9)
    _refused(service.url, carol)
    _refused(service.url, carol)
    text, samples = _scrape(service.url, BOB)
    assert _value(samples, "coe_key_requests_total", key="carol", status="200") == 1
    assert _value(samples, "coe_key_requests_total", key="carol", status="429") == 2
    assert _value(samples, "coe_key_rate_limited_total", key="carol", limit="rpm") == 2
    assert _value(samples, "coe_key_tokens_total", key="carol") == usage.total_tokens
    assert _value(samples, "coe_key_spend_dollars_total", key="carol") == pytest.approx(dollars, abs=1e-9)
    assert _value(samples, "coe_key_rate_limited_total", key="tiny", limit="tpm") >= 1
    assert _value(samples, "coe_key_requests_total", key="bob", status="200") >= 1
    for secret in [*SECRETS.values(), BOB, hashlib.sha256(BOB.encode()).hexdigest()]:
        assert secret not in text
    assert "COE_KEY_" not in text  # the variables holding the secrets are not named either


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "coe-router-dashboard.json"
HISTOGRAM_SAMPLES = ("_bucket", "_count", "_sum")


def _queries(dashboard: dict) -> list[str]:
    """Every PromQL query of the dashboard: its panels' targets and its query variables'."""
    return [*(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])),
            *(v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query")]


def _metric_names(query: str) -> set[str]:
    return set(re.findall(r"\bcoe_[a-z_]+", query))


def _label_names(query: str) -> set[str]:
    """The labels a query groups by (`by (...)`, `label_values(m, label)`) or matches on (`{label=~...}`)."""
    grouped = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", query) for label in group.split(",")}
    matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)", query))
    values = set(re.findall(r"label_values\(\s*coe_[a-z_]+\s*,\s*([a-z_]+)\s*\)", query))
    return (grouped | matched | values) - {""}


def test_the_dashboard_queries_only_metrics_and_labels_of_a_real_scrape_per_key_panels_included(service):
    """After a keyed request of every kind (a fallback, an unpriced model, a stream) and a refusal, every query of
    the dashboard names metrics that have samples in the scrape, grouped or matched by labels those samples
    carry; every metric of the service is plotted, each per-key counter by key."""
    dash = SECRETS["COE_KEY_DASH"]
    client = _client(service.url, dash)
    client.chat.completions.create(model="coe", messages=[{"role": "user", "content": "the integral of x"}])
    client.chat.completions.create(model="coe/unpriced", messages=ROMAN)
    list(client.chat.completions.create(model="coe", messages=ROMAN, stream=True))
    _refused(service.url, dash)  # rpm 3: the fourth request of the minute
    _, samples = _scrape(service.url, BOB)
    labels = {name: {label for key in by_labels for label, _ in key} for name, by_labels in samples.items()}
    dashboard = json.loads(DASHBOARD.read_text())
    plotted: set[str] = set()
    for query in _queries(dashboard):
        names = _metric_names(query)
        assert names, query
        for name in names:
            assert samples.get(name), f"{name} has no sample in the scrape ({query})"
        carried = set().union(*(labels[name] for name in names))
        assert _label_names(query) <= carried, (query, _label_names(query) - carried)
        plotted |= {name.removesuffix(suffix) for name in names for suffix in HISTOGRAM_SAMPLES
                    if name.endswith(suffix)} | names
    assert set(METRICS) <= plotted, set(METRICS) - plotted
    for name in ("coe_key_requests_total", "coe_key_tokens_total", "coe_key_spend_dollars_total",
                 "coe_key_rate_limited_total"):
        assert _value(samples, name, key="dashboard") > 0, name
        assert any(name in query and "by (key" in query for query in _queries(dashboard)), name


@pytest.mark.parametrize("entry, named", [
    ({"name": "x", "key_env": "COE_KEY_ALICE", "rpm": "lots"}, ["keys[1] ('x')", "rpm"]),
    ({"name": "x", "key_env": "COE_KEY_NOT_SET"}, ["keys[1] ('x')", "key_env", "COE_KEY_NOT_SET"]),
])
def test_a_bad_keys_file_stops_coe_serve_with_a_message_naming_the_field(upstream, tmp_path, entry, named):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(ops_config(upstream)))
    keys = _keys_file(tmp_path, [KEYS[0], entry])
    done = subprocess.run([sys.executable, "-m", "coe_router.cli", "serve", "--config", str(config), "--keys",
                           str(keys), "--port", "0"], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **SECRETS})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("coe: error: ") and str(keys) in last
    for name in named:
        assert name in last, last


# -- shared across replicas: PostgreSQL ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as dsn:
        yield dsn


async def _storage_checks(dsn: str) -> None:
    from coe_router.serve.rate_limits import open_limiter

    async with open_limiter(dsn) as limiter:
        storage = limiter.storage
        assert await storage.check()
        counts = await asyncio.gather(*(storage.incr("unit/burst", 60, 1) for _ in range(40)))
        assert sorted(counts) == list(range(1, 41))  # one atomic UPSERT per hit: none lost, none twice
        assert await storage.get("unit/burst") == 40
        assert 55 < await storage.get_expiry("unit/burst") - time.time() <= 60
        assert await storage.incr("unit/short", 1, 5) == 5
        await asyncio.sleep(1.1)
        assert await storage.get("unit/short") == 0  # its window is past: counted from zero again
        assert await storage.incr("unit/short", 1, 2) == 2
        await storage.clear("unit/burst")
        assert await storage.get("unit/burst") == 0
        assert await storage.get("unit/never") == 0


def test_the_postgres_storage_counts_hits_atomically_and_restarts_expired_windows(postgres):
    asyncio.run(_storage_checks(postgres))


def test_two_replicas_on_one_postgres_share_a_keys_budget(upstream, postgres, tmp_path):
    config = {**ops_config(upstream), "persistence": {"checkpointer": "postgres"}}
    keys = _keys_file(tmp_path, [{"name": "shared", "key_env": "COE_KEY_ALICE", "rpm": 3}])
    env = {**SECRETS, "COE_POSTGRES_DSN": postgres}
    replicas = [CoeServe(config, tmp_path, f"replica-{i}", env=env, args=("--keys", str(keys))).start()
                for i in range(2)]
    try:
        a, b = (replica.wait().url for replica in replicas)
        key = SECRETS["COE_KEY_ALICE"]
        for url in (a, b, a):
            assert _ask(url, key).parse().choices[0].message.content
        _retry_after(_refused(b, key))  # the fourth request of the minute, on either replica
        _retry_after(_refused(a, key))
    finally:
        for replica in replicas:
            replica.stop()
