"""The router's parts as LangChain parts, on the real embedded default: MiniLM as an `Embeddings`, the example index
as a langchain-chroma `VectorStore`, local likelihood scoring as traced LLM runs, local structured output."""

import numpy as np
import pytest
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel

from coe_router import load_config
from coe_router.builder import open_example_store
from coe_router.models.factory import build_models
from coe_router.models.scoring import LikelihoodScorer, likelihood_scorer
from coe_router.retrieval.encoder import load_encoder
from coe_router.routing.classifiers import LlmClassifier
from tests.fakes import CollectingTracer

pytestmark = pytest.mark.integration


def test_minilm_is_a_langchain_embeddings_with_the_same_vectors():
    encoder = load_encoder()
    texts = ["What is the derivative of x^3?", "Who wrote the Magna Carta?"]
    documents = np.asarray(encoder.embed_documents(texts))
    assert documents.shape == (2, 384)
    assert np.allclose(documents, encoder.encode(texts), atol=1e-6)
    assert np.allclose(encoder.embed_query(texts[0]), documents[0], atol=1e-6)


def test_example_index_as_a_langchain_vectorstore_finds_what_the_router_finds(local_config_path):
    store = open_example_store(load_config(local_config_path))
    query = "If P(A)=0.8, P(B)=0.5 and P(A union B)=0.9, what is P(A intersect B)?"
    ours = store.search(query, 5)
    found = store.as_vectorstore().similarity_search_with_relevance_scores(query, k=5)
    assert [doc.id for doc, _ in found] == [example.id for example in ours]
    assert found[0][0].metadata["task"] == ours[0].task == "math"
    assert found[0][0].page_content == ours[0].question
    retriever = store.as_vectorstore().as_retriever(search_kwargs={"k": 2})
    assert [doc.id for doc in retriever.invoke(query)] == [example.id for example in ours[:2]]


def test_local_label_scoring_is_a_likelihood_scorer_and_shows_in_traces(local_config_path):
    config = load_config(local_config_path)
    model = build_models(config, {"smollm2-135m"})["smollm2-135m"]
    assert isinstance(model, LikelihoodScorer) and likelihood_scorer(model) is model
    collector = CollectingTracer()
    classify = LlmClassifier(config.tasks, model, use_examples=False)
    RunnableLambda(lambda query: classify(query, None, []), name="classify").invoke(
        "Which enzyme unwinds DNA?", config={"callbacks": [collector]})
    scoring = [run for run in collector.all_runs() if run.name == "task-classifier"]
    assert len(scoring) == 1 and scoring[0].run_type == "llm"
    assert scoring[0].extra["metadata"]["role"] == "classifier" and "coe:classifier" in scoring[0].tags
    scores = scoring[0].outputs["generations"][0][0]["text"]
    assert all(f"{task} ***" in scores for task in config.tasks)


def test_local_model_structured_output_follows_the_schema(local_config_path):
    class Answer(BaseModel):
        city: str
        confident: bool

    model = build_models(load_config(local_config_path), {"smollm2-135m"})["smollm2-135m"]
    answer = model.with_structured_output(Answer).invoke("What is the capital of France? Reply in JSON.")
    assert isinstance(answer, Answer) and answer.city.strip()
