"""The keys file (serve/keys.py) and the per-key limiter on memory storage (serve/rate_limits.py)."""

from __future__ import annotations

import hashlib
import json

import pytest
from limits.aio.storage import MemoryStorage

from coe_router.config import ConfigError
from coe_router.serve.keys import ApiKey, digest, load_keys, service_keys
from coe_router.serve.rate_limits import KeyLimiter, is_limited, open_limiter

ENV = {"KEY_A": "secret-a", "KEY_B": "secret-b", "LEGACY": "legacy-token"}


def _file(tmp_path, body, suffix=".yaml"):
    path = tmp_path / f"keys{suffix}"
    path.write_text(json.dumps(body) if suffix == ".json" else body)
    return path


def test_a_yaml_list_of_keys_with_env_and_sha256_secrets(tmp_path):
    sha = hashlib.sha256(b"secret-c").hexdigest()
    ring = load_keys(_file(tmp_path, f"- {{name: a, key_env: KEY_A, rpm: 2}}\n- {{name: c, key_sha256: {sha}, "
                                     "tpm: 100}\n"), ENV)
    assert [(k.name, k.rpm, k.tpm) for k in ring.keys] == [("a", 2, None), ("c", None, 100)]
    assert ring.match("Bearer secret-a").name == "a"
    assert ring.match("bearer  secret-c ").name == "c"
    assert ring.match("Bearer secret-b") is None and ring.match(None) is None and ring.match("Basic secret-a") is None
    assert "secret" not in repr(ring.keys)


def test_a_json_file_in_the_keys_form(tmp_path):
    ring = load_keys(_file(tmp_path, {"keys": [{"name": "b", "key_env": "KEY_B"}]}, ".json"), ENV)
    assert ring.match("Bearer secret-b").name == "b"


@pytest.mark.parametrize("body, names", [
    ("- {name: a, key_env: KEY_A, rpm: 0}", ("keys[0] ('a')", "rpm")),
    ("- {name: a, key_env: KEY_A}\n- {name: b, key_env: KEY_B, tmp: 5}", ("keys[1] ('b')", "tmp", "unknown field")),
    ("- {name: a}", ("keys[0] ('a')", "key_env, key_sha256: give exactly one")),
    ("- {name: a, key_env: KEY_A, key_sha256: '" + "0" * 64 + "'}", ("keys[0]", "key_env, key_sha256", "exactly one")),
    ("- {name: a, key_env: NOT_SET_ANYWHERE}", ("keys[0] ('a')", "key_env", "NOT_SET_ANYWHERE is not set")),
    ("- {name: a, key_sha256: xyz}", ("keys[0] ('a')", "key_sha256")),
    ("- {name: 'bad name', key_env: KEY_A}", ("keys[0] ('bad name')", "name")),
    ("- {name: a, key_env: KEY_A}\n- {name: a, key_env: KEY_B}", ("keys[1] ('a')", "used twice")),
    ("- {name: a, key_env: KEY_A}\n- {name: b, key_env: KEY_A}", ("keys[1] ('b')", "same secret")),
    ("[]", ("keys", "at least 1")),
    ("keys: [oops", ("not valid YAML",)),
])
def test_a_bad_file_is_one_error_naming_the_entry_and_field(tmp_path, body, names):
    with pytest.raises(ConfigError) as caught:
        load_keys(_file(tmp_path, body), ENV)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "keys.yaml")) and "\n" not in message
    for name in names:
        assert name in message, message


def test_without_a_keys_file_the_single_token_guards_alone(tmp_path):
    assert service_keys(None, "LEGACY", ENV) is None


def test_the_single_token_stays_valid_beside_a_keys_file_unlimited_under_its_variables_name(tmp_path):
    path = _file(tmp_path, "- {name: a, key_env: KEY_A, rpm: 1}")
    ring = service_keys(None, "LEGACY", {**ENV, "COE_KEYS_FILE": str(path)})
    legacy = ring.match("Bearer legacy-token")
    assert (legacy.name, legacy.rpm, legacy.tpm) == ("LEGACY", None, None)
    assert [k.name for k in service_keys(path, "UNSET_TOKEN", ENV).keys] == ["a"]
    with pytest.raises(ConfigError, match="used twice"):
        service_keys(_file(tmp_path, "- {name: LEGACY, key_env: KEY_A}"), "LEGACY", ENV)


def test_only_the_apis_posts_count_against_limits():
    assert is_limited("POST", "/v1/chat/completions") and is_limited("POST", "/v1/threads/x/resume")
    assert not is_limited("GET", "/v1/models") and not is_limited("GET", "/metrics")


async def test_requests_per_minute_refuse_the_next_request_with_the_seconds_to_wait():
    async with open_limiter() as limiter:
        a, b = ApiKey("a", digest("1"), rpm=2), ApiKey("b", digest("2"), rpm=2)
        assert [await limiter.admit(a) for _ in range(2)] == [None, None]
        refusal = await limiter.admit(a)
        assert refusal.limit == "rpm" and 1 <= refusal.retry_after_s <= 60
        assert await limiter.admit(b) is None  # another key has its own budget
        assert await limiter.admit(ApiKey("free", digest("3"))) is None


async def test_tokens_per_minute_let_the_crossing_answer_through_and_refuse_the_next():
    async with open_limiter() as limiter:
        key = ApiKey("t", digest("1"), rpm=100, tpm=10)
        assert await limiter.admit(key) is None
        await limiter.spend(key, 9)
        assert await limiter.admit(key) is None
        await limiter.spend(key, 5)
        refusal = await limiter.admit(key)
        assert refusal.limit == "tpm" and refusal.retry_after_s >= 1


async def test_rpm_and_tpm_of_the_same_amount_are_separate_counters():
    limiter = KeyLimiter(MemoryStorage())
    key = ApiKey("same", digest("1"), rpm=3, tpm=3)
    assert await limiter.admit(key) is None
    assert await limiter.admit(key) is None  # two requests counted, no tokens yet: the token budget is whole
    await limiter.spend(key, 3)
    assert (await limiter.admit(key)).limit == "tpm"


def test_the_readmes_keys_file_loads(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Per-key limits"):]
    example = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL).group(1)
    ring = load_keys(_file(tmp_path, example), {"TEAM_A_KEY": "a-secret"})
    assert [(k.name, k.rpm, k.tpm) for k in ring.keys] == [("team-a", 60, 20000), ("batch", None, None)]
    assert ring.match("Bearer test").name == "batch"
