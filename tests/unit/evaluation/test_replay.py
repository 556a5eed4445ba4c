"""Replay evaluation, routers, splits, tuning and the embedding cache on small synthetic data (fake encoder), plus
one check on the real MMLU-Pro outcomes."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from coe_router.cli import evaluate as cli_eval
from coe_router.cli.main import main
from coe_router.evaluation.embedding_cache import encode_cached
from coe_router.outcomes import Outcomes, read_outcomes, write_outcomes
from coe_router.routing.learned_router import TASK_PRIOR_STRENGTHS
from coe_router.evaluation.replay import ROUTERS, ReplayBench, classification_report, prepare_pool
from coe_router.evaluation.replay_routers import oracle_route
from coe_router.evaluation.splits import split_outcomes, stratified_split
from coe_router.evaluation.tuning import tune_classifier_k, tune_knn_router
from coe_router.retrieval.neighbours import top_k
from coe_router.routing.query_router import KnnRouter, KnnRouterParams
from tests.fakes import BagOfWordsEncoder

MODELS = ["alg", "geo", "hist"]
PRICES = {"alg": 1.0, "geo": 0.5, "hist": 0.1}
GROUPS = {  # group: (task, words, which model is right)
    "algebra": ("math", "algebra solve the equation for x", "alg"),
    "geometry": ("math", "geometry triangle angle area circle", "geo"),
    "history": ("history", "history king war century empire", "hist"),
}


def make(counts: dict[str, int], prefix: str) -> Outcomes:
    """Questions of each group; exactly one model is right on each (so random's expectation is 1/3)."""
    ids, tasks, texts, scores = [], [], [], []
    for group, n in counts.items():
        task, words, right = GROUPS[group]
        for i in range(n):
            ids.append(f"{prefix}-{group}-{i}")
            tasks.append(task)
            texts.append(f"{words} {prefix}{group}{i}")
            scores.append([1.0 if m == right else 0.0 for m in MODELS])
    return Outcomes(ids=ids, categories=np.array(tasks, dtype=object), questions=texts, models=MODELS,
                    scores=np.array(scores))


TRAIN = {"algebra": 12, "geometry": 8, "history": 10}   # math's best expert: alg (12/20 > 8/20)
TEST = {"algebra": 6, "geometry": 4, "history": 5}


@pytest.fixture
def bench():
    encoder = BagOfWordsEncoder()
    train, test = make(TRAIN, "tr"), make(TEST, "te")
    return ReplayBench(train, test, encoder.encode(train.questions), encoder.encode(test.questions),
                       prices=PRICES, classifier_k=3, knn_params=KnnRouterParams(k=3, prior="none"))


def test_baselines_match_hand_computed_values(bench):
    results = {r.router: r for r in bench.run_all()}
    assert results["best-single"].accuracy == pytest.approx(100 * 6 / 15, abs=0.01)   # alg: algebra only
    # category: math -> alg (right on 6 algebra, wrong on 4 geometry), history -> hist (5/5)
    assert results["category"].accuracy == pytest.approx(100 * 11 / 15, abs=0.01)
    assert results["oracle"].accuracy == 100.0
    assert results["oracle"].mean_price == pytest.approx((6 * 1.0 + 4 * 0.5 + 5 * 0.1) / 15, abs=1e-3)
    assert abs(results["random"].accuracy - 100 / 3) < 8 and results["random"].accuracy_std > 0
    assert results["category"].picks == {"alg": pytest.approx(10 / 15, abs=1e-3), "hist": pytest.approx(5 / 15, abs=1e-3)}
    # per task: math 6/10 right, history 5/5; the macro average weighs both tasks the same
    assert results["category"].per_task == {"history": 100.0, "math": 60.0}
    assert results["category"].macro_accuracy == 80.0
    assert results["best-single"].per_task == {"history": 0.0, "math": 60.0}
    assert results["random"].macro_accuracy is not None and results["random"].mean_price is not None


def test_two_stage_with_a_perfect_classifier_equals_category_and_knn_router_beats_it(bench):
    results = {r.router: r for r in bench.run_all()}
    assert results["two-stage"].classifier_accuracy == 100.0
    assert results["two-stage"].accuracy == results["category"].accuracy
    # the query-level router tells algebra from geometry inside "math"; the task map cannot
    assert results["knn-router"].accuracy == 100.0 > results["category"].accuracy
    for result in results.values():
        assert results["oracle"].accuracy >= result.accuracy
    assert {"router", "accuracy", "n"} <= set(results["two-stage"].model_dump())
    assert results["two-stage"].n == 15


def test_cost_weight_trades_accuracy_for_price(bench):
    free = bench.run("knn-router")
    bench.knn_params = KnnRouterParams(k=3, prior="none", cost_weight=10.0)
    cheap = bench.run("knn-router")
    assert cheap.picks == {"hist": 1.0} and cheap.mean_price == pytest.approx(0.1)
    assert cheap.accuracy == pytest.approx(100 * 5 / 15, abs=0.01)
    assert cheap.accuracy < free.accuracy
    with pytest.raises(ValueError, match="needs prices"):
        KnnRouter(MODELS, bench.train_vectors, bench.train.scores, bench.train.categories, KnnRouterParams(cost_weight=1))


def test_knn_router_prior_shrinks_small_neighbourhoods_to_the_task_expert(bench):
    """With an overwhelming task prior the knn-router becomes the (soft) two-stage router."""
    bench.knn_params = KnnRouterParams(k=3, prior="task", prior_strength=1e6, task_k=3)
    assert bench.run("knn-router").accuracy == bench.run("category").accuracy
    knn = KnnRouter(MODELS, bench.train_vectors, bench.train.scores, bench.train.categories.tolist(),
                    KnnRouterParams(k=3, prior="none"))
    choice = knn.route_vector(bench.test_vectors[-1])  # a history question
    assert choice.model == "hist" and choice.expected["hist"] == 1.0 and len(choice.neighbours) == 3


def test_missing_cells_drop_questions_from_every_router(bench):
    scores = bench.test.scores.copy()
    scores[0, 1] = np.nan
    test = Outcomes(ids=bench.test.ids, categories=bench.test.categories, questions=bench.test.questions,
                    models=MODELS, scores=scores)
    with pytest.raises(ValueError, match="missing cells"):
        ReplayBench(bench.train, test)
    train, kept, _, rows = prepare_pool(bench.train, test)
    assert kept.n == 14 and rows[0] == 1
    zero_train, zero_test, _, _ = prepare_pool(bench.train, test, missing="zero")
    assert zero_test.n == 15 and zero_test.scores[0, 1] == 0.0
    small = prepare_pool(bench.train, test, models=["alg", "hist"])[1]
    assert small.n == 15 and small.models == ["alg", "hist"]  # the blank was in a model outside the pool


def test_oracle_prefers_the_cheapest_correct_model():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert oracle_route(scores, np.array([0.9, 0.2, 0.1])).tolist() == [1, 2]


def test_classification_report_counts_unknown_against_recall():
    report = classification_report(["a", "a", "b", "b"], ["a", "b", "b", "unknown"], classifier="knn")
    assert report.accuracy == 50.0 and report.unknown == 1
    assert report.labels == ["a", "b", "unknown"]
    assert report.confusion == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert report.per_class["a"].precision == 100.0 and report.per_class["a"].recall == 50.0
    assert report.macro_precision == 75.0 and report.macro_recall == 50.0


def test_split_is_stratified_deterministic_and_order_free():
    data = make({"algebra": 10, "geometry": 10, "history": 20}, "q")
    train, test = stratified_split(data.ids, data.categories, 0.25, seed=3)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == data.n
    assert sorted(data.categories[test].tolist()).count("math") == 5 and data.categories[test].tolist().count("history") == 5
    again = stratified_split(data.ids, data.categories, 0.25, seed=3)
    assert again[1].tolist() == test.tolist()
    order = list(range(data.n))
    random.Random(0).shuffle(order)
    shuffled = data.take(order)
    _, shuffled_test = split_outcomes(shuffled, 0.25, seed=3)
    assert set(shuffled_test.ids) == {data.ids[i] for i in test}
    assert set(stratified_split(data.ids, data.categories, 0.25, seed=4)[1]) != set(test)


def test_tuning_uses_train_only_and_ranks_the_grid(bench):
    grid = [KnnRouterParams(k=k, prior="none") for k in (1, 3, 25)]
    tuning = tune_knn_router(MODELS, bench.train_vectors, bench.train.scores, bench.train.categories.tolist(),
                             grid=grid, folds=3)
    accuracies = [row.accuracy for row in tuning.table]
    assert accuracies == sorted(accuracies, reverse=True) and tuning.best == tuning.table[0].params
    assert tuning.best.k in (1, 3) and len(tuning.table[0].fold_accuracy) == 3
    assert tune_classifier_k(bench.train_vectors, bench.train.categories, ks=(1, 3))[1] == 100.0


def test_top_k_is_sorted_and_can_hide_each_row_from_itself():
    vectors = BagOfWordsEncoder().encode(["a b c", "a b d", "x y z", "a b c e"])
    idx, sims = top_k(vectors, vectors, 2, exclude=np.arange(4))
    assert idx[0].tolist() == [3, 1] and all(i not in row for i, row in enumerate(idx))
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_embedding_cache_reuses_vectors_across_lists(tmp_path):
    encoder = BagOfWordsEncoder()
    first = encode_cached(["alpha beta", "gamma", "delta"], encoder, cache_dir=tmp_path, progress=False)
    assert encoder.calls == 1
    again = encode_cached(["delta", "alpha beta"], encoder, cache_dir=tmp_path, progress=False)
    assert encoder.calls == 1
    np.testing.assert_allclose(again, first[[2, 0]])
    encode_cached(["delta", "new text"], encoder, cache_dir=tmp_path, progress=False)
    assert encoder.calls == 2
    encode_cached(["delta"], encoder, cache_dir="-", progress=False)
    assert encoder.calls == 3


def write_split(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, part in (("train", make(TRAIN, "tr")), ("test", make(TEST, "te"))):
        paths[f"{name}_questions"] = str(tmp_path / f"{name}.questions.jsonl")
        paths[f"{name}_outcomes"] = str(tmp_path / f"{name}.correctness.csv")
        write_outcomes(part, paths[f"{name}_questions"], paths[f"{name}_outcomes"])
    (tmp_path / "prices.json").write_text(json.dumps(PRICES))
    return paths


def test_cli_replay_and_classifier_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_eval, "get_encoder", BagOfWordsEncoder)
    p = write_split(tmp_path)
    common = ["--train-questions", p["train_questions"], "--train-outcomes", p["train_outcomes"],
              "--test-questions", p["test_questions"], "--test-outcomes", p["test_outcomes"],
              "--cache-dir", str(tmp_path / "cache"), "--k", "3", "--json"]
    assert main(["eval", "replay", *common, "--router", "two-stage"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["router"] == "two-stage" and result["n"] == 15 and result["classifier_accuracy"] == 100.0
    assert result["accuracy"] == pytest.approx(100 * 11 / 15, abs=0.01)
    assert main(["eval", "replay", *common, "--router", "all", "--knn-k", "3", "--prior", "none",
                 "--prices", str(tmp_path / "prices.json")]) == 0
    results = {r["router"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(results) == list(ROUTERS)
    assert results["knn-router"]["accuracy"] == 100.0 and results["best-single"]["mean_price"] == 1.0
    assert results["knn-router"]["macro_accuracy"] == 100.0 and results["category"]["macro_accuracy"] == 80.0
    picks = tmp_path / "picks.csv"
    assert main(["eval", "replay", *common, "--router", "category,knn-router", "--picks", str(picks)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(picks.open()))
    assert len(rows) == 2 * 15 and {r["router"] for r in rows} == {"category", "knn-router"}
    geometry = [r for r in rows if "-geometry-" in r["question_id"]]
    assert {(r["router"], r["model"], r["score"]) for r in geometry} == {("category", "alg", "0.0"),
                                                                       ("knn-router", "geo", "1.0")}
    assert main(["eval", "replay", *common, "--router", "category,knn-router,learned-router,mf-router",
                 "--knn-k", "3"]) == 0
    category, knn, learned, mf = json.loads(capsys.readouterr().out)
    assert learned["router"] == "learned-router" and set(learned["params"]["cv_accuracy_by_blend"]) == {
        "0.0", "0.25", "0.5", "0.75", "1.0"}
    assert learned["params"]["task_prior_strength"] in TASK_PRIOR_STRENGTHS
    assert learned["accuracy"] >= category["accuracy"] and mf["router"] == "mf-router" and mf["params"]["dim"] > 0
    assert main(["eval", "replay", *common, "--router", "nonsense"]) == 2
    capsys.readouterr()
    assert main(["eval", "replay", *common, "--router", "two-stage", "--threshold", "0.9"]) == 2
    assert "--threshold 0.9 only applies to --classifier hybrid" in capsys.readouterr().err
    assert main(["eval", "replay", *common, "--models", "alg,geo", "--pool", "both=alg,geo"]) == 2
    assert "--models and --pool" in capsys.readouterr().err
    assert main(["eval", "classifier", "--train-questions", p["train_questions"], "--test-questions",
                 p["test_questions"], "--k", "3", "--cache-dir", str(tmp_path / "cache"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == 100.0 and report["confusion"] == [[5, 0], [0, 10]]


def test_cli_split_and_confusion_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_eval, "get_encoder", BagOfWordsEncoder)
    data = make({"algebra": 10, "history": 10}, "q")
    write_outcomes(data, tmp_path / "q.jsonl", tmp_path / "c.csv")
    assert main(["eval", "split", "--questions", str(tmp_path / "q.jsonl"), "--outcomes", str(tmp_path / "c.csv"),
                 "--out", str(tmp_path / "split"), "--test-fraction", "0.3"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert read_outcomes(paths["test_outcomes"], paths["test_questions"]).n == 6
    pytest.importorskip("matplotlib")
    assert main(["eval", "classifier", "--train-questions", paths["train_questions"], "--test-questions",
                 paths["test_questions"], "--k", "3", "--cache-dir", "-", "--plot", str(tmp_path / "cm.png")]) == 0
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_real_mmlu_pro_split_reproduces_the_reported_baselines():
    """The 29-model pool on the seed-0 split of docs/RESULTS.md (no embeddings needed for these routers); the
    split keeps MMLU-Pro's 388 questions with a repeated text on one side."""
    from reports.data import find_data_dir

    mmlu = find_data_dir() / "mmlu-pro-model-outputs"  # the repository's copy
    data = read_outcomes(mmlu / "correctness.csv", mmlu / "questions.jsonl")
    train, test = split_outcomes(data, 0.3, seed=0)
    assert (train.n, test.n) == (5865, 2514)
    train, test, _, _ = prepare_pool(train, test)
    assert (train.n, test.n) == (5056, 2136)
    results = {r.router: r.accuracy for r in ReplayBench(train, test).run_all(["best-single", "category", "oracle"])}
    assert results == {"best-single": pytest.approx(71.91, abs=0.01), "category": pytest.approx(72.71, abs=0.01),
                       "oracle": pytest.approx(94.90, abs=0.01)}
