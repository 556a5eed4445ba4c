import json

import pytest

from coe_router.retrieval.store import ExamplesFileError, ExampleStore, chroma_collection, read_examples
from tests.unit.conftest import EXAMPLES


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


def test_any_langchain_embeddings_can_back_the_store_and_the_graph(tmp_path):
    """A LangChain embedding model in place of MiniLM: the store normalises its vectors and the graph indexes the
    config's examples with it and routes."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from coe_router import build_graph, load_config
    from coe_router.retrieval.encoder import EmbeddingsEncoder
    from tests.fakes import ScriptedChat
    from tests.unit.conftest import CONFIG, write_config

    embeddings = DeterministicFakeEmbedding(size=32)
    store = ExampleStore(chroma_collection("lc-embeddings", None), embeddings)
    assert isinstance(store.encoder, EmbeddingsEncoder)
    store.add(EXAMPLES)
    hits = store.search(EXAMPLES[0].question, 3)
    assert hits[0].id == EXAMPLES[0].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(json.dumps({"question_id": e.id, "question": e.question, "category": e.task}) + "\n"
                                for e in EXAMPLES))
    retriever = {**CONFIG["retriever"], "persist_dir": str(tmp_path / "chroma"), "examples": str(examples)}
    config = load_config(write_config(tmp_path, retriever=retriever))
    models = {name: ScriptedChat(reply=lambda p: "ok", seen=[]) for name in config.models}
    result = build_graph(config, models=models, encoder=embeddings).invoke({"query": EXAMPLES[0].question})
    assert result["answer"] == "ok" and result["decision"].retrieved[0].id == EXAMPLES[0].id
    assert result["decision"].task == EXAMPLES[0].task


def test_a_store_without_its_client_says_why_it_has_no_vectorstore_view():
    from tests.fakes import BagOfWordsEncoder

    store = ExampleStore(chroma_collection("no-client", None), BagOfWordsEncoder())
    with pytest.raises(ValueError, match="Chroma client"):
        store.as_vectorstore()
