"""Broken configs whose fault shows only when the graph is built (a file on disk, a model, a store): each is one
ConfigError of one line naming the config file and the field, never a traceback from Chroma, llama.cpp or SQLite."""

from __future__ import annotations

import pytest

from coe_router import ConfigError, build_graph, load_config
from coe_router.models.factory import build_models
from tests.fakes import BagOfWordsEncoder, ScriptedChat
from tests.unit.conftest import CONFIG, write_config


def fakes() -> dict:
    return {name: ScriptedChat(reply=lambda p: "ok", seen=[]) for name in CONFIG["models"]}


def one_line_naming(error: ConfigError, path, field: str) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: ") and field in message, message


def test_persist_dir_that_is_a_file(tmp_path):
    (tmp_path / "index").write_text("not a folder")
    path = write_config(tmp_path, retriever={**CONFIG["retriever"], "persist_dir": "index"})
    with pytest.raises(ConfigError) as error:
        build_graph(path, models=fakes(), encoder=BagOfWordsEncoder())
    one_line_naming(error.value, path, "retriever.persist_dir")


def test_examples_that_are_not_jsonl(tmp_path):
    (tmp_path / "examples.jsonl").write_text("question,category\nwhat is 2+2,math\n")
    path = write_config(tmp_path, retriever={**CONFIG["retriever"], "examples": "examples.jsonl",
                                             "persist_dir": "chroma"})
    with pytest.raises(ConfigError) as error:
        build_graph(path, models=fakes(), encoder=BagOfWordsEncoder())
    one_line_naming(error.value, path, "retriever.examples")
    assert "examples.jsonl:1" in str(error.value)


def test_an_unwritable_sqlite_path(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    path = write_config(tmp_path, persistence={"checkpointer": "sqlite", "path": "blocker/threads.sqlite"})
    with pytest.raises(ConfigError) as error:
        build_graph(path, models=fakes(), encoder=BagOfWordsEncoder(), store=None)
    one_line_naming(error.value, path, "persistence.path")


@pytest.mark.parametrize("kind", ["knn", "mf", "learned"])
def test_a_missing_outcomes_file_names_the_outcomes_field(tmp_path, kind):
    (tmp_path / "train.jsonl").write_text('{"question_id": "1", "category": "math", "question": "2+2"}\n')
    path = write_config(tmp_path, router={"kind": kind, "outcomes": "missing.csv", "questions": "train.jsonl"})
    with pytest.raises(ConfigError) as error:
        build_graph(path, models=fakes(), encoder=BagOfWordsEncoder())
    one_line_naming(error.value, path, "router.outcomes")
    assert "missing.csv" in str(error.value)


@pytest.mark.parametrize("spec, words", [
    ({"provider": "llamacpp", "path": "notes.gguf"}, "is not a GGUF model file"),
    ({"provider": "llamacpp", "package": "os"}, "is a module, not a package"),
])
def test_a_local_model_that_is_not_a_model(tmp_path, spec, words):
    (tmp_path / "notes.gguf").write_text("these are notes, not weights")
    config = load_config(write_config(tmp_path, models={**CONFIG["models"], "math-model": spec}))
    with pytest.raises(ConfigError, match=f"models.math-model: .*{words}"):
        build_models(config, {"math-model"})


def test_an_absurd_context_size_is_refused_at_load(tmp_path):
    path = write_config(tmp_path, models={**CONFIG["models"],
                                          "math-model": {"provider": "llamacpp", "package": "x", "n_ctx": 10**30}})
    with pytest.raises(ConfigError) as error:
        load_config(path)
    one_line_naming(error.value, path, "models.math-model.n_ctx")
