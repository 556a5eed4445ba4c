from pathlib import Path

import pytest
import yaml

from coe_router.config import default_config_path
from tests.service_upstream import Upstream


@pytest.fixture(scope="session")
def local_config_path(tmp_path_factory) -> Path:
    """The embedded default config, with its Chroma index in a temporary folder (the shipped examples and leaderboard kept)."""
    source = default_config_path()
    data = yaml.safe_load(source.read_text())
    folder = tmp_path_factory.mktemp("local")
    data["retriever"]["persist_dir"] = str(folder / "chroma")
    data["retriever"]["examples"] = str(source.parent / data["retriever"]["examples"])
    data["task_map"]["from"] = str(source.parent / data["task_map"]["from"])
    path = folder / "local.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def upstream():
    """A scriptable OpenAI-compatible expert server (tests/service_upstream.py), one per test module."""
    with Upstream() as server:
        yield server
