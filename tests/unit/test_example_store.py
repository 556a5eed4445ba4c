import json

import pytest

from coe_router.example_store import ExampleStore, ExamplesFileError, chroma_collection, read_examples

from .conftest import EXAMPLES


def test_search_returns_nearest_labelled_examples(store):
    found = store.search("reverse a python list", k=2)
    assert [e.task for e in found] == ["code", "code"]
    assert found[0].score >= found[1].score and 0 < found[0].score <= 1


def test_reindexing_is_idempotent(tmp_path, encoder):
    store = ExampleStore(chroma_collection("again", tmp_path / "db"), encoder)
    store.add(EXAMPLES)
    store.add(EXAMPLES)
    assert store.count() == len(EXAMPLES)
    reopened = ExampleStore(chroma_collection("again", tmp_path / "db"), encoder)
    assert reopened.count() == len(EXAMPLES)


def test_empty_store_returns_nothing(tmp_path, encoder):
    assert ExampleStore(chroma_collection("empty", tmp_path / "db"), encoder).search("x", 3) == []


def test_read_examples_validates_lines(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"question_id": 7, "category": "math", "question": "1+1?"}) + "\n\n"
                    + json.dumps({"category": "code", "question": "loop?"}) + "\n")
    examples = read_examples(good)
    assert examples[0].id == "7" and examples[1].task == "code" and len(examples[1].id) == 16
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no category"}\n')
    with pytest.raises(ExamplesFileError, match="bad.jsonl:1"):
        read_examples(bad)
