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
