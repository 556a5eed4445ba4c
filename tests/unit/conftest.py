from pathlib import Path

import pytest
import yaml

from coe_router import load_config
from coe_router.retrieval.store import ExampleStore, chroma_collection
from coe_router.schema import LabelledExample
from tests.fakes import BagOfWordsEncoder

CONFIG = {
    "models": {
        "math-model": {"provider": "openai", "model": "qwen-math", "base_url": "http://127.0.0.1:9/v1"},
        "code-model": {"provider": "openai", "model": "qwen-coder", "base_url": "http://127.0.0.1:9/v1"},
        "general-model": {"provider": "openai", "model": "llama", "base_url": "http://127.0.0.1:9/v1"},
    },
    "tasks": {"math": "arithmetic and algebra", "code": "programming", "history": "past events"},
    "experts": {
        "mathematician": {"model": "math-model"},
        "coder": {"model": "code-model"},
        "generalist": {"model": "general-model"},
    },
    "task_map": {"math": ["mathematician", "generalist"], "code": "coder", "unknown": "generalist"},
    "classifier": {"kind": "knn"},
    "retriever": {"collection": "test-examples", "k": 3},
}

EXAMPLES = [
    LabelledExample(id="m1", question="solve the equation for x: 2x + 3 = 7", task="math"),
    LabelledExample(id="m2", question="what is the integral of x squared", task="math"),
    LabelledExample(id="m3", question="compute the sum of the first ten integers", task="math"),
    LabelledExample(id="c1", question="write a python function that reverses a list", task="code"),
    LabelledExample(id="c2", question="fix the bug in this python loop", task="code"),
    LabelledExample(id="h1", question="when did the roman empire fall", task="history"),
    LabelledExample(id="h2", question="who won the battle of waterloo", task="history"),
]


def write_config(tmp_path: Path, **overrides) -> Path:
    """The test config with `overrides`; its Chroma index in `tmp_path` (never the user's ~/.cache) unless the
    overrides place it."""
    data = {**CONFIG, **overrides}
    retriever = dict(data.get("retriever") or {})
    if "persist_dir" not in retriever and "chroma_url" not in retriever:
        data["retriever"] = {**retriever, "persist_dir": str(tmp_path / "chroma-index")}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path):
    return load_config(write_config(tmp_path))


@pytest.fixture
def encoder():
    return BagOfWordsEncoder()


@pytest.fixture
def store(tmp_path, encoder):
    store = ExampleStore(chroma_collection("test-examples", tmp_path / "chroma"), encoder)
    store.add(EXAMPLES)
    return store
