import json

import pytest

from coe_router import ConfigError, load_config, task_map_from_config
from coe_router.config import LlamaCppModel
from tests.unit.conftest import CONFIG, write_config


def test_embedded_default_config_is_valid():
    config = load_config()
    assert config.classifier.kind == "hybrid"
    assert set(config.experts) == {"smollm2", "gemma3"}
    assert all(isinstance(m, LlamaCppModel) for m in config.models.values())
    assert config.resolve_path(config.retriever.examples).exists()


def test_shorthand_task_map_becomes_ranked_lists(config):
    assert config.task_map["code"] == ["coder"]
    task_map = task_map_from_config(config)
    assert task_map.default_expert == "generalist"
    assert "unknown" not in task_map.ranking


@pytest.mark.parametrize(
    "override, field",
    [
        ({"task_map": {"math": "nobody"}}, "task_map.math"),
        ({"task_map": {"astrology": "coder"}}, "task_map.astrology"),
        ({"experts": {"coder": {"model": "missing-model"}}}, "experts.coder.model"),
        ({"models": {"m": {"provider": "openai", "model": "x", "base_url": "ftp://host"}}}, "base_url"),
        ({"models": {"m": {"provider": "carrier-pigeon"}}}, "models.m"),
        ({"tasks": {}}, "tasks"),
        ({"tasks": {"unknown": "reserved"}}, "tasks"),
        ({"classifier": {"kind": "llm"}}, "classifier.model"),
        ({"classifier": {"kind": "knn", "thresold": 0.5}}, "classifier.thresold"),
        ({"models": {"m": {"provider": "llamacpp"}}}, "models.m"),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path, override, field):
    path = write_config(tmp_path, **override)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert field in str(error.value)


def test_missing_and_malformed_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_task_map_from_leaderboard_file_keeps_configured_experts(tmp_path):
    leaderboard = tmp_path / "leaderboard.json"
    leaderboard.write_text(json.dumps({
        "ranking": {"math": ["gpt-x", "mathematician", "generalist"], "code": ["coder"]},
        "overall_ranking": ["gpt-x", "coder", "generalist"],
    }))
    config = load_config(write_config(tmp_path, task_map={"from": "leaderboard.json"}))
    task_map = task_map_from_config(config)
    assert task_map.ranking["math"] == ["mathematician", "generalist"]
    assert task_map.default_expert == "coder"


def test_missing_leaderboard_file_names_the_field(tmp_path):
    config = load_config(write_config(tmp_path, task_map={"from": "absent.json"}))
    with pytest.raises(ConfigError, match="task_map.from"):
        task_map_from_config(config)


def test_changing_the_task_list_is_a_config_edit(tmp_path):
    tasks = {**CONFIG["tasks"], "poetry": "writing verse"}
    config = load_config(write_config(tmp_path, tasks=tasks, task_map={**CONFIG["task_map"], "poetry": "generalist"}))
    assert task_map_from_config(config).route("poetry").expert == "generalist"
