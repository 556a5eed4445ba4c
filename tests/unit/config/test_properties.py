"""Property-based: random configs and request bodies never crash the loader or the server with an unhandled error."""

import json
import re

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coe_router import ConfigError, RouterConfig, build_graph, load_config, task_map_from_config
from coe_router.serve.app import create_app
from tests.fakes import ScriptedChat
from tests.unit.conftest import CONFIG, write_config

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)
sections = st.sampled_from(list(CONFIG) + ["limits", "persistence", "default_expert", "bogus"])


@st.composite
def mutated_configs(draw):
    """A valid config with a few sections or fields replaced by random values."""
    config = json.loads(json.dumps(CONFIG))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(sections)
        if isinstance(config.get(section), dict) and config[section] and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(config[section])))
            config[section][key] = draw(json_values)
        else:
            config[section] = draw(json_values)
    return config


def assert_one_line_naming(error: ConfigError, path) -> None:
    """A config error is one line that starts with the file and then says where (a field or a line)."""
    message = str(error)
    assert type(error) is ConfigError
    assert len(message.splitlines()) == 1 and message.strip() == message, message
    assert message.startswith(f"{path}: ") and len(message) > len(f"{path}: "), message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(mutated_configs(), json_values))
def test_loader_returns_a_config_or_a_config_error(tmp_path, data):
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        assert isinstance(load_config(path), RouterConfig)
    except ConfigError as error:
        assert_one_line_naming(error, path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_loader_survives_arbitrary_bytes(tmp_path, raw):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(raw)
    try:
        load_config(path)
    except ConfigError as error:
        assert_one_line_naming(error, path)


VALID_LINES = yaml.safe_dump(CONFIG, sort_keys=False).splitlines(keepends=True)
KEY_LINES = [i for i, line in enumerate(VALID_LINES) if re.match(r"^\s*[\w-]+:", line)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.sampled_from(KEY_LINES))
def test_any_duplicated_key_line_is_refused_with_its_line(tmp_path, index):
    path = tmp_path / "twice.yaml"
    lines = VALID_LINES[:index + 1] + [VALID_LINES[index]] + VALID_LINES[index + 1:]
    path.write_text("".join(lines), encoding="utf-8")
    key = VALID_LINES[index].split(":")[0].strip()
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert_one_line_naming(error.value, path)
    assert f"{path}: line {index + 2}: duplicate key " in str(error.value)
    assert re.search(rf"duplicate key '([\w-]+\.)*{re.escape(key)}'", str(error.value)), str(error.value)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(board=st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "ranking": st.one_of(json_values, st.dictionaries(st.sampled_from(list(CONFIG["tasks"])), st.lists(
        st.sampled_from(list(CONFIG["experts"]) + ["gpt-x"]), max_size=3), max_size=3)),
    "overall_ranking": st.one_of(json_values, st.lists(st.sampled_from(list(CONFIG["experts"]) + ["gpt-x"]))),
    "accuracy": json_values, "overall_accuracy": json_values})))
def test_any_leaderboard_gives_a_task_map_or_a_config_error(tmp_path, board):
    (tmp_path / "board.json").write_text(json.dumps(board), encoding="utf-8")
    path = write_config(tmp_path, task_map={"from": "board.json"})
    config = load_config(path)
    try:
        task_map_from_config(config)
    except ConfigError as error:
        assert_one_line_naming(error, path)
        assert f"{path}: task_map.from: " in str(error)


messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "robot"]),
                                           "content": st.one_of(st.text(max_size=60), json_values)}), max_size=3)
bodies = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["coe", "other"]), "messages": messages,
                           "stream": st.booleans()}),
    json_values,
)


_clients: dict = {}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_server_answers_random_bodies_without_500(config, store, body):
    # Fixtures are shared by all examples of one test, so the app is built once per test.
    if id(store) not in _clients:
        models = {name: ScriptedChat(reply=lambda p: "ok", seen=[]) for name in CONFIG["models"]}
        app = create_app(build_graph(config, models=models, store=store), token_env=None)
        _clients[id(store)] = TestClient(app, raise_server_exceptions=False)
    client = _clients[id(store)]
    response = client.post("/v1/chat/completions", content=json.dumps(body))
    assert response.status_code in {200, 400, 404}, response.text
    if response.status_code != 200:
        assert response.json()["error"]["code"]
