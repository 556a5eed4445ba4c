"""`coe experts add|remove` edit the config safely: validated first, atomic, comments kept."""

import pytest

from coe_router import ConfigError, load_config
from coe_router.cli.main import main
from coe_router.config.edit import add_expert, remove_expert
from tests.unit.conftest import write_config


@pytest.fixture
def path(tmp_path):
    path = write_config(tmp_path)
    path.write_text("# my router\n" + path.read_text())
    return path


def test_add_then_remove_round_trip(path):
    config = add_expert(path, "prover", "math-model", ["math"], rank=0)
    assert config.task_map["math"] == ["prover", "mathematician", "generalist"]
    assert load_config(path).experts["prover"].model == "math-model"
    assert path.read_text().startswith("# my router")
    remove_expert(path, "prover")
    assert load_config(path).task_map["math"] == ["mathematician", "generalist"]


def test_removing_an_only_expert_drops_its_task_entries(path):
    config = remove_expert(path, "coder")
    assert "code" not in config.task_map and "coder" not in config.experts


def test_invalid_edit_leaves_the_file_untouched(path):
    before = path.read_text()
    with pytest.raises(ConfigError, match="nothing written"):
        add_expert(path, "ghost", "no-such-model", [])
    with pytest.raises(ConfigError, match="already exists"):
        add_expert(path, "coder", "code-model", [])
    with pytest.raises(ConfigError, match="no expert named"):
        remove_expert(path, "nobody")
    assert path.read_text() == before
    assert not list(path.parent.glob(".*.tmp"))


def test_cli_experts(path, capsys):
    assert main(["experts", "add", "poet", "--model", "general-model", "--tasks", "history", "--config", str(path)]) == 0
    assert main(["experts", "list", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "poet" in out and "history #1" in out
    assert main(["experts", "remove", "poet", "--config", str(path)]) == 0
    assert main(["experts", "add", "x", "--model", "nope", "--config", str(path)]) == 2
