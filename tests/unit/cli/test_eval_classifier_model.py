"""`coe eval classifier|replay --classifier llm|hybrid`: the classifier model comes from --config's classifier.model,
task descriptions from the config's tasks where a name matches (no model runs here)."""

import argparse

import pytest

from coe_router.cli import evaluate
from coe_router.models import factory
from coe_router.routing.classifiers import LlmClassifier
from tests.fakes import ScriptedChat
from tests.unit.conftest import write_config


def _args(classifier: str, config=None) -> argparse.Namespace:
    return argparse.Namespace(classifier=classifier, config=config, threshold=0.6)


def test_llm_classifier_takes_the_configs_classifier_model(tmp_path, monkeypatch):
    chat = ScriptedChat()
    built = []
    monkeypatch.setattr(
        factory, "build_models", lambda config, names: built.append(set(names)) or {"general-model": chat}
    )
    path = write_config(tmp_path, classifier={"kind": "llm", "model": "general-model"})
    classifier = evaluate._eval_classifier_model(_args("llm", path), ["math", "geology"])
    assert isinstance(classifier, LlmClassifier) and classifier.model is chat
    assert classifier.tasks == {"math": "arithmetic and algebra", "geology": "geology"}
    assert built == [{"general-model"}]


def test_knn_needs_no_config_and_llm_needs_one(tmp_path):
    assert evaluate._eval_classifier_model(_args("knn"), ["math"]).kind == "knn"
    with pytest.raises(ValueError, match="needs --config"):
        evaluate._eval_classifier_model(_args("hybrid"), ["math"])
    with pytest.raises(ValueError, match="classifier.model is not set"):
        evaluate._eval_classifier_model(_args("llm", write_config(tmp_path)), ["math"])
