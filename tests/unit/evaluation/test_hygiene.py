"""Evaluation hygiene: duplicates never straddle the split, named pools share one question set, one classifier k,
paired bootstrap intervals in replay's output."""

import json

import numpy as np
import pytest

from coe_router.cli import evaluate as cli_eval
from coe_router.cli.main import main
from coe_router.evaluation import DEFAULT_CLASSIFIER_K
from coe_router.outcomes import Outcomes, write_outcomes
from coe_router.evaluation.replay import ReplayBench, parse_pools, pool_union
from coe_router.evaluation.splits import duplicate_groups, normalize_text, split_outcomes, stratified_split
from tests.fakes import BagOfWordsEncoder
from tests.unit.evaluation.test_replay import MODELS, bench, make, write_split  # noqa: F401  (bench is a fixture)


def with_duplicates() -> Outcomes:
    """40 questions; 6 texts occur 2-4 times (case and spacing differ), one of them under two categories."""
    data = make({"algebra": 15, "history": 15, "geometry": 10}, "q")
    texts = list(data.questions)
    for group, rows in enumerate([(0, 1, 2), (3, 20), (5, 6, 7, 8), (16, 17), (30, 31), (10, 25)]):
        for n, row in enumerate(rows):
            texts[row] = ("  Same  TEXT " if n % 2 else "same text ") + str(group)
    return Outcomes(ids=data.ids, categories=data.categories, questions=texts, models=data.models, scores=data.scores)


def test_split_never_separates_duplicate_texts():
    data = with_duplicates()
    groups = duplicate_groups(data.questions, data.n)
    assert len(set(groups.tolist())) == data.n - 15 + 6
    for seed in range(25):
        for fraction in (0.2, 0.3, 0.5):
            train, test = split_outcomes(data, fraction, seed)
            assert not {normalize_text(q) for q in train.questions} & {normalize_text(q) for q in test.questions}
            assert train.n + test.n == data.n


def test_split_without_duplicates_keeps_exact_stratified_counts():
    data = make({"algebra": 10, "geometry": 10, "history": 20}, "q")
    plain = stratified_split(data.ids, data.categories, 0.25, seed=3)
    with_texts = stratified_split(data.ids, data.categories, 0.25, seed=3, texts=data.questions)
    assert plain[1].tolist() == with_texts[1].tolist()
    assert duplicate_groups(["", ""], 2).tolist() == [0, 1]   # empty texts (no questions file) never group


def test_named_pools():
    pools = parse_pools(["small=geo,hist", "all=*"], MODELS)
    assert pools == {"small": ["geo", "hist"], "all": MODELS} and pool_union(pools) == ["geo", "hist", "alg"]
    with pytest.raises(ValueError, match="unknown model"):
        parse_pools(["x=nobody"], MODELS)
    with pytest.raises(ValueError, match="NAME=model"):
        parse_pools(["justaname"], MODELS)


def test_replay_results_carry_paired_intervals(bench):  # noqa: F811
    assert ReplayBench(bench.train, bench.test).classifier_k == DEFAULT_CLASSIFIER_K
    results = {r.router: r for r in bench.run_all()}
    knn = {d.b: d for d in results["knn-router"].differences}
    assert knn["best-single"].difference == pytest.approx(60.0)   # 100% vs 40%
    assert knn["best-single"].low <= 60.0 <= knn["best-single"].high
    assert knn["category"].difference == pytest.approx(100 - 100 * 11 / 15, abs=1e-3)
    assert [d.b for d in results["best-single"].differences] == ["category"]
    assert {d.b for d in results["random"].differences} == {"best-single", "category"}


def test_cli_pools_share_one_question_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_eval, "get_encoder", BagOfWordsEncoder)
    p = write_split(tmp_path)
    test = make({"algebra": 6, "geometry": 4, "history": 5}, "te")
    scores = test.scores.copy()
    scores[0, 0] = np.nan   # alg not evaluated on one test question: every pool drops it, not only the ones with alg
    write_outcomes(Outcomes(ids=test.ids, categories=test.categories, questions=test.questions, models=MODELS,
                            scores=scores), p["test_questions"], p["test_outcomes"])
    common = ["--train-questions", p["train_questions"], "--train-outcomes", p["train_outcomes"],
              "--test-questions", p["test_questions"], "--test-outcomes", p["test_outcomes"], "--cache-dir", "-"]
    assert main(["eval", "replay", *common, "--router", "best-single,category", "--pool", "cheap=geo,hist",
                 "--pool", "all=*", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_test"] == 14 and set(payload["pools"]) == {"cheap", "all"}
    assert {r["n"] for results in payload["pools"].values() for r in results} == {14}
    assert payload["classifier_k"] == DEFAULT_CLASSIFIER_K
    assert main(["eval", "replay", *common, "--router", "two-stage", "--k", "auto", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["k"] in (1, 3, 5, 10, 20)
    assert main(["eval", "replay", *common, "--router", "best-single,knn-router", "--knn-k", "3"]) == 0
    assert "vs best-single" in capsys.readouterr().out
