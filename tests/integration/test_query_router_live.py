"""The query-level router on the embedded default: configs/local-knn.yaml answers offline, routing each query by
the local experts' recorded outcomes on its nearest labelled questions."""

import pytest
import yaml

from coe_router import build_graph, load_config
from coe_router.config import default_config_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def knn_config(tmp_path_factory):
    source = default_config_path().parent / "local-knn.yaml"
    data = yaml.safe_load(source.read_text())
    folder = tmp_path_factory.mktemp("knn")
    data["retriever"]["persist_dir"] = str(folder / "chroma")
    for section, key in (("retriever", "examples"), ("task_map", "from"), ("router", "outcomes"), ("router", "questions")):
        data[section][key] = str(source.parent / data[section][key])
    path = folder / "local-knn.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def test_the_query_level_router_answers_offline_with_expected_scores(knn_config):
    graph = build_graph(knn_config)
    result = graph.invoke({"messages": [("user", "Which court case established judicial review in the United States?")]})
    decision = result["decision"]
    assert decision.expert in {"gemma3", "smollm2"} and result["answer"].strip()
    scores = {c.expert: c.expected_score for c in decision.candidates}
    assert set(scores) == {"gemma3", "smollm2"} and all(0 <= s <= 1 for s in scores.values())
    assert decision.expert == max(scores, key=scores.get)
    assert result["messages"][-1].response_metadata["coe"]["candidates"]


class CountingEncoder:
    """The real MiniLM encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, 0
        self.model = encoder.model  # the same identity (its model's name) as the encoder it counts for

    def encode(self, texts):
        self.texts += len(texts)
        return self.encoder.encode(texts)


def test_a_restart_reads_the_memory_vectors_back_instead_of_embedding_them(knn_config):
    from coe_router.retrieval.encoder import load_encoder

    minilm = load_encoder(knn_config.retriever.embedding_package, knn_config.retriever.embedding_path)
    build_graph(knn_config, encoder=CountingEncoder(minilm))  # the first start embeds what is missing
    restart = CountingEncoder(minilm)
    graph = build_graph(knn_config, encoder=restart)
    memory_rows = len(graph.query_router.knn.vectors)
    assert memory_rows > 100 and restart.texts <= 4  # identity probes only, none of the memory's questions
    decision = graph.invoke({"messages": [("user", "What is the derivative of x^3?")]})["decision"]
    assert decision.candidates and decision.expert in {"gemma3", "smollm2"}


def test_another_encoder_on_a_minilm_collection_is_refused_naming_both(knn_config):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from coe_router.retrieval.identity import EncoderMismatchError

    build_graph(knn_config)  # the collection exists, built by MiniLM
    for size in (384, 64):
        with pytest.raises(EncoderMismatchError, match=r"retriever.collection .*built by encoder "
                                                       r"SentenceEncoder:.*\(384 dimensions\).*DeterministicFakeEmbedding"
                                                       rf".*\({size} dimensions\); set a new retriever.collection name"):
            build_graph(knn_config, encoder=DeterministicFakeEmbedding(size=size))


@pytest.mark.parametrize("kind, how", [("mf", "matrix factorisation"),
                                       ("learned", "knn shrunk to the task + success predictor")])
def test_a_learned_router_kind_trains_on_the_memory_at_start_and_routes_by_the_classified_task(knn_config, kind, how):
    config = knn_config.model_copy(update={"router": knn_config.router.model_copy(update={"kind": kind})})
    graph = build_graph(config)
    scorer = graph.query_router.scorer
    assert scorer is not None and scorer.models == graph.query_router.experts
    result = graph.invoke({"messages": [("user", "What is the derivative of x^3?")]})
    decision = result["decision"]
    scores = {c.expert: c.expected_score for c in decision.candidates}
    assert graph.query_router.reason == f"query-level router ({how} on recorded outcomes)"
    assert decision.expert == max(scores, key=scores.get) and result["answer"].strip()
    # the estimate is the trained router's for the classified task, not the plain neighbourhood vote
    vector = graph.query_router.encoder.encode(["What is the derivative of x^3?"])
    expected = scorer.expected_scores(vector, [decision.task])[0]
    assert scores == {m: round(float(v), 4) for m, v in zip(scorer.models, expected)}
