"""LiteLLM's proxy in front of a real `coe serve` (docs/DEPLOY.md, "LiteLLM's proxy in front"), offline.

A real `litellm --config` process, from a virtual environment of its own (`COE_WITH_LITELLM=1 ./install.sh`
makes `.venv-litellm`; `$COE_LITELLM` names another `litellm` executable), on deploy/litellm/litellm.yaml in front
of a real `coe serve` on the embedded default (the local llama.cpp experts), called with the official `openai`
client. No database, no Redis: what LiteLLM does without them.

    keyed   the shipped config: callers from a keys file in coe serve's format (deploy/litellm/coe_keys_auth.py),
            plus two copies of its deployment, one capped at 1 request a minute, one with a dollar budget
    plain   the shipped deployment with LiteLLM's master key only (no custom auth)

Checked: a chat completion and a stream answered by coe serve through the proxy (its `coe` body field and
`x-coe-*` headers passed on, LiteLLM's cost from the config's prices); unknown and missing keys refused (401);
per-key requests and tokens per minute (429 with `Retry-After`, other keys still answered, the refused request
never reaching coe serve; a tpm below one request's estimate refusing the first); a deployment's rpm for all keys together; a deployment's budget; a bad keys file
stopping the proxy at start; and, with the master key alone, that any other key needs a database (virtual keys
need PostgreSQL and Prisma's engines, which `prisma generate` downloads: not run here).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.service_upstream import CoeServe, ServerProcess, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "litellm"
LITELLM = Path(os.environ.get("COE_LITELLM") or ROOT / ".venv-litellm" / "bin" / "litellm")
if not (LITELLM.is_file() and os.access(LITELLM, os.X_OK)):
    pytest.skip(f"no LiteLLM proxy at {LITELLM} (install it with COE_WITH_LITELLM=1 ./install.sh, or name a "
                "`litellm` executable in $COE_LITELLM)", allow_module_level=True)

ROMAN = [{"role": "user", "content": "who was the first roman emperor?"}]
MASTER_KEY = "sk-master-" + "7Qm2Zr" * 6
SECRETS = {"COE_KEY_LITELLM": "sk-coe-for-litellm-41d0", "LITELLM_KEY_TEAM_A": "sk-team-a-9c2e",
           "LITELLM_KEY_OPEN": "sk-open-5f7a", "LITELLM_KEY_OTHER": "sk-other-e81b",
           "LITELLM_KEY_TINY": "sk-tiny-27c4"}
BATCH = "sk-batch-by-hash-0b3d"  # given in the keys file by its SHA-256 only
PROXY_KEYS = [
    {"name": "team-a", "key_env": "LITELLM_KEY_TEAM_A", "rpm": 2},
    {"name": "batch", "key_sha256": hashlib.sha256(BATCH.encode()).hexdigest(), "tpm": 50},
    {"name": "open", "key_env": "LITELLM_KEY_OPEN"},
    {"name": "other", "key_env": "LITELLM_KEY_OTHER"},
    {"name": "tiny", "key_env": "LITELLM_KEY_TINY", "tpm": 5},
]
# Variables that would give LiteLLM a database, a Redis or another master key from the caller's environment.
SCRUBBED = ("DATABASE_URL", "DIRECT_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_URL")


class LiteLLMProxy(ServerProcess):
    """A real `litellm --config FILE` process on a free port; its output goes to `<folder>/<name>.log`."""

    kind = "litellm"
    health_path = "/health/liveliness"

    def __init__(self, config: dict, folder: Path, name: str, env: dict[str, str]):
        self.folder, self.name = folder / name, name
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHIPPED / "coe_keys_auth.py", self.folder)  # custom auth is found beside the config
        self.config_path = self.folder / "litellm.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = env
        self.port = free_port()
        self.log_path = self.folder / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> LiteLLMProxy:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("LITELLM_")}
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", **self.env})
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([str(LITELLM), "--config", str(self.config_path), "--host", "127.0.0.1",
                                         "--port", str(self.port)], cwd=self.folder, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self


def shipped_config() -> dict:
    return yaml.safe_load((SHIPPED / "litellm.yaml").read_text())


PRICES = next(m["litellm_params"] for m in shipped_config()["model_list"] if m["model_name"] == "coe-router")


def keyed_config() -> dict:
    """The shipped config as it is, with two copies of its deployment: one capped at 1 request a minute (all keys
    together), one whose budget one answer spends."""
    config = shipped_config()
    (router,) = config["model_list"]
    config["model_list"] += [
        {"model_name": "coe-capped", "litellm_params": {**router["litellm_params"], "rpm": 1}},
        {"model_name": "coe-budget", "litellm_params": {**router["litellm_params"], "max_budget": 0.000005,
                                                        "budget_duration": "1d"}},
    ]
    return config


def plain_config() -> dict:
    """The shipped deployment behind LiteLLM's master key alone: no custom auth."""
    config = shipped_config()
    del config["general_settings"]["custom_auth"]
    return config


@pytest.fixture(scope="module")
def stack(local_config_path, tmp_path_factory):
    """coe serve on the embedded default (keyed: LiteLLM's requests carry its `litellm` key) and both proxies,
    started side by side."""
    folder = tmp_path_factory.mktemp("litellm")
    coe_keys = folder / "coe-keys.yaml"
    coe_keys.write_text(yaml.safe_dump([{"name": "litellm", "key_env": "COE_KEY_LITELLM"}]))
    proxy_keys = folder / "proxy-keys.yaml"
    proxy_keys.write_text(yaml.safe_dump(PROXY_KEYS, sort_keys=False))
    coe = CoeServe(local_config_path, folder, "coe", env=SECRETS, args=("--keys", str(coe_keys))).start()
    env = {**SECRETS, "COE_BASE_URL": f"{coe.url}/v1", "COE_UPSTREAM_KEY": SECRETS["COE_KEY_LITELLM"],
           "COE_LITELLM_KEYS_FILE": str(proxy_keys), "LITELLM_MASTER_KEY": MASTER_KEY}
    proxies = {"keyed": LiteLLMProxy(keyed_config(), folder, "keyed", env).start(),
               "plain": LiteLLMProxy(plain_config(), folder, "plain", env).start()}
    try:
        coe.wait()
        for proxy in proxies.values():
            proxy.wait()
        yield {"coe": coe, **proxies}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        coe.stop()


@pytest.fixture(scope="module")
def keyed(stack) -> LiteLLMProxy:
    return stack["keyed"]


def _client(proxy: LiteLLMProxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=key, max_retries=0, timeout=120)


def _ask(proxy: LiteLLMProxy, key: str, model: str = "coe-router"):
    return _client(proxy, key).chat.completions.with_raw_response.create(model=model, messages=ROMAN, max_tokens=8)


def _refused(proxy: LiteLLMProxy, key: str, model: str = "coe-router") -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(proxy, key, model)
    return caught.value


def _retry_after(refusal: openai.RateLimitError) -> int:
    value = refusal.response.headers["retry-after"]
    assert value.isdigit() and 1 <= int(value) <= 60, value
    return int(value)


def _coe_requests(coe: CoeServe) -> float:
    """How many API requests coe serve answered for LiteLLM's key (its per-key metric)."""
    text = httpx.get(f"{coe.url}/metrics", headers={"authorization": f"Bearer {SECRETS['COE_KEY_LITELLM']}"}).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "coe_key_requests_total" and sample.labels.get("key") == "litellm")


def test_a_chat_completion_through_the_proxy_is_coe_serves_routed_answer_priced_by_litellm(keyed):
    raw = _ask(keyed, SECRETS["LITELLM_KEY_OPEN"])
    answer = raw.parse()
    assert answer.model == "coe-router" and answer.choices[0].message.content
    routed = answer.model_extra["coe"]  # coe serve's own routing record, passed through
    assert routed["expert"] in ("smollm2", "gemma3") and routed["task"]
    assert raw.headers["llm_provider-x-coe-expert"] == routed["expert"]  # coe's headers, under LiteLLM's prefix
    usage = answer.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    expected = usage.prompt_tokens * PRICES["input_cost_per_token"] + \
        usage.completion_tokens * PRICES["output_cost_per_token"]
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(expected, rel=1e-6)


def test_a_streamed_completion_through_the_proxy_ends_with_its_usage(keyed):
    chunks = list(_client(keyed, SECRETS["LITELLM_KEY_OPEN"]).chat.completions.create(
        model="coe-router", messages=ROMAN, max_tokens=8, stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    assert chunks[-1].usage.total_tokens > 0 and chunks[-1].usage.completion_tokens > 0


def test_unknown_and_missing_keys_are_a_401_and_a_files_key_is_no_admin(keyed):
    with pytest.raises(openai.AuthenticationError):
        _ask(keyed, "sk-nobody")
    with pytest.raises(openai.AuthenticationError):
        _ask(keyed, hashlib.sha256(BATCH.encode()).hexdigest())  # the file's digest is no key
    with pytest.raises(openai.AuthenticationError):
        _ask(keyed, MASTER_KEY)  # the custom auth decides every request: the master key opens nothing
    bare = httpx.post(f"{keyed.url}/v1/chat/completions", json={"model": "coe-router", "messages": ROMAN})
    assert bare.status_code == 401, bare.text
    admin = httpx.post(f"{keyed.url}/config/update", json={},
                       headers={"authorization": f"Bearer {SECRETS['LITELLM_KEY_OPEN']}"})
    assert admin.status_code == 403, admin.text


def test_a_key_over_its_requests_per_minute_gets_a_429_with_retry_after_that_never_reaches_coe(stack, keyed):
    team_a, before = SECRETS["LITELLM_KEY_TEAM_A"], _coe_requests(stack["coe"])
    for _ in range(2):
        assert _ask(keyed, team_a).parse().choices[0].message.content
    refusal = _refused(keyed, team_a)
    assert refusal.status_code == 429 and _retry_after(refusal) >= 1
    assert "Limit type: requests" in refusal.response.json()["error"]["message"]
    assert _coe_requests(stack["coe"]) == before + 2  # refused in front: coe serve saw the two answered only
    assert _ask(keyed, SECRETS["LITELLM_KEY_OPEN"]).parse().choices[0].message.content  # other keys answer
    _retry_after(_refused(keyed, team_a))  # still refused: its window has not reset


def test_a_key_over_its_tokens_per_minute_is_refused_after_the_answer_that_spent_them(keyed):
    answer = _ask(keyed, BATCH).parse()  # tpm 50: this answer is let through and uses more than that
    assert answer.usage.total_tokens > 50
    refusal = _refused(keyed, BATCH)
    assert _retry_after(refusal) >= 1 and "Limit type: tokens" in refusal.response.json()["error"]["message"]
    assert _ask(keyed, SECRETS["LITELLM_KEY_OPEN"]).parse().choices[0].message.content


def test_a_tpm_below_one_requests_estimate_refuses_even_the_first_request(keyed):
    """Unlike coe serve (which counts an answer's tokens after it), LiteLLM reserves a request's estimated tokens
    before the call: with tpm 5 nothing fits."""
    refusal = _refused(keyed, SECRETS["LITELLM_KEY_TINY"])
    assert _retry_after(refusal) >= 1 and "Limit type: tokens" in refusal.response.json()["error"]["message"]


def _in_one_minute(seconds: float = 10) -> None:
    """A deployment's rpm counts per calendar minute (UTC): start so the next `seconds` stay in one."""
    now = datetime.now(timezone.utc)
    if now.second + now.microsecond / 1e6 > 60 - seconds:
        time.sleep(60.5 - now.second - now.microsecond / 1e6)


def test_a_deployments_rpm_caps_every_key_together(keyed):
    _in_one_minute()
    assert _ask(keyed, SECRETS["LITELLM_KEY_OPEN"], "coe-capped").parse().choices[0].message.content
    refusal = _refused(keyed, SECRETS["LITELLM_KEY_OTHER"], "coe-capped")  # another key, the same deployment
    assert "Model rate limit exceeded. RPM limit=1" in refusal.response.json()["error"]["message"]
    assert _ask(keyed, SECRETS["LITELLM_KEY_OPEN"]).parse().choices[0].message.content  # the uncapped deployment


def test_a_deployments_budget_stops_it_once_its_answers_cost_more(keyed):
    raw = _ask(keyed, SECRETS["LITELLM_KEY_OPEN"], "coe-budget")  # budget $0.000005: this answer costs more
    assert float(raw.headers["x-litellm-response-cost"]) > 0.000005
    refusal = _refused(keyed, SECRETS["LITELLM_KEY_OPEN"], "coe-budget")
    assert "crossed budget" in refusal.response.json()["error"]["message"]


def test_with_the_master_key_alone_every_other_key_needs_a_database(stack):
    plain = stack["plain"]
    assert _ask(plain, MASTER_KEY).parse().choices[0].message.content
    bare = httpx.post(f"{plain.url}/v1/chat/completions", json={"model": "coe-router", "messages": ROMAN})
    assert bare.status_code == 401, bare.text
    # Any other key could be a virtual key, which LiteLLM looks up in its database: without one, a 400.
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(plain, SECRETS["LITELLM_KEY_OPEN"])
    assert caught.value.response.json()["error"]["type"] == "no_db_connection"
    made = httpx.post(f"{plain.url}/key/generate", json={"rpm_limit": 2},
                      headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert made.status_code == 500 and "DB not connected" in made.text, made.text  # virtual keys: a database


def test_a_bad_keys_file_stops_the_proxy_at_start_naming_the_entry_and_field(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([PROXY_KEYS[2], {"name": "x", "key_env": "LITELLM_KEY_NOT_SET"}]))
    proxy = LiteLLMProxy(shipped_config(), tmp_path, "bad", {
        **SECRETS, "COE_BASE_URL": "http://127.0.0.1:9/v1", "COE_UPSTREAM_KEY": "unused",
        "COE_LITELLM_KEYS_FILE": str(keys), "LITELLM_MASTER_KEY": MASTER_KEY}).start()
    try:
        assert proxy.process.wait(timeout=120) != 0
    finally:
        proxy.stop()
    assert f"{keys}: keys[1] ('x'): key_env: the variable LITELLM_KEY_NOT_SET is not set" in proxy.log()
    assert "Application startup failed" in proxy.log()
