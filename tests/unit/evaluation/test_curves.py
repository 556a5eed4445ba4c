"""Quality/cost curves (Pareto points, APGR, CPT) and paired bootstrap intervals, on numbers computed by hand."""

import json

import numpy as np
import pytest

from coe_router.cli import evaluate as cli_eval
from coe_router.cli.main import main
from coe_router.evaluation.bootstrap import paired_bootstrap
from coe_router.evaluation.curves import apgr, cost_curve, fraction_for_gap, gap_envelope, pareto_mask
from coe_router.evaluation.prices import PER_1M, cost_matrix
from tests.fakes import BagOfWordsEncoder
from tests.unit.evaluation.test_replay import PRICES, bench, write_split  # noqa: F401  (bench is a fixture)


def test_envelope_apgr_and_cpt_by_hand():
    """weak (0, 0); one router point at x=0.5 recovering the whole gap: the curve rises to (0.5, 1), then is flat."""
    xs, ys = gap_envelope([0.5], [1.0])
    assert xs.tolist() == [0.0, 0.5] and ys.tolist() == [0.0, 1.0]
    assert apgr(xs, ys) == pytest.approx(0.25 + 0.5)
    assert fraction_for_gap(xs, ys, 0.5) == pytest.approx(0.25)
    assert fraction_for_gap(xs, ys, 0.8) == pytest.approx(0.4)
    assert fraction_for_gap(xs, ys, 1.1) is None


def test_envelope_is_concave_and_ignores_dominated_points():
    # (0.5, 0.2) lies under the chord from (0, 0) to (1, 1): mixing weak and the last point beats it
    xs, ys = gap_envelope([0.5, 1.0, 0.8], [0.2, 1.0, 0.5])
    assert xs.tolist() == [0.0, 1.0] and apgr(xs, ys) == pytest.approx(0.5)   # the random-mix baseline
    # a point past the highest one is cut: the curve is held flat instead
    xs, ys = gap_envelope([0.2, 0.9], [0.8, 0.6])
    assert xs.tolist() == [0.0, 0.2] and apgr(xs, ys) == pytest.approx(0.08 + 0.8 * 0.8)


def test_pareto_mask():
    accuracy = np.array([50, 60, 55, 60, 40])
    cost = np.array([1.0, 2.0, 2.0, 3.0, 1.0])
    assert pareto_mask(accuracy, cost).tolist() == [True, True, False, False, False]


def test_cost_curve_on_the_synthetic_bench(bench):  # noqa: F811
    """alg 1.0 / geo 0.5 / hist 0.1; test: 6 algebra (alg right), 4 geometry (geo), 5 history (hist).
    strong = alg (best on train): 40% at 1.0; weak = hist (cheapest): 33.3% at 0.1. The knn-router at lambda 0
    is always right: 100% at (6 x 1 + 4 x 0.5 + 5 x 0.1) / 15."""
    report = cost_curve(bench, cost_matrix(bench.test, PRICES), PER_1M, weights=[0.0], samples=200)
    assert (report.strong.model, report.weak.model) == ("alg", "hist")
    assert report.strong.accuracy == pytest.approx(40.0) and report.weak.accuracy == pytest.approx(100 / 3, abs=0.01)
    knn = report.router("knn-router")
    point = knn.points[0]
    assert point.accuracy == 100.0 and point.cost == pytest.approx(8.5 / 15, abs=1e-6) and point.pareto
    x = (8.5 / 15 - 0.1) / 0.9
    gap = (100 - 100 / 3) / (40 - 100 / 3)   # 10: ten times the weak-to-strong gap
    assert knn.apgr == pytest.approx(gap * (1 - x / 2), abs=1e-3)
    assert knn.cpt[0].percent_of_strong == pytest.approx(100 * (0.1 + 0.5 / gap * x * 0.9), abs=0.01)
    assert knn.matches_best_single == point and knn.at_best_single_cost == point
    category = report.router("category").points[0]   # math -> alg, history -> hist
    assert category.accuracy == pytest.approx(100 * 11 / 15, abs=0.01) and category.cost == pytest.approx(0.7)
    names = {(i.a, i.b) for i in report.intervals}
    assert ("knn-router (lambda=0)", "best-single") in names and ("knn-router (lambda=0)", "category (lambda=0)") in names


def test_call_share_the_mix_of_singles_baseline_and_bootstrap_intervals(bench):  # noqa: F811
    """The singles' own envelope is the chord weak (0, 0) -> strong (1, 1): APGR 0.5, half the calls for 50% of the
    gap. The knn-router sends the 6 algebra questions (6/15 = 40%) to the strong alg and recovers 10x the gap, so
    its (strong-call share, PGR) envelope reaches 50% of the gap at 0.5 / 10 x 40% = 2% of the calls."""
    report = cost_curve(bench, cost_matrix(bench.test, PRICES), PER_1M, weights=[0.0], samples=300)
    mix = report.mix_of_singles
    assert mix.router == "mix of single models" and mix.apgr == pytest.approx(0.5)
    assert mix.calls[0].strong_share == pytest.approx(50.0) and mix.cpt[0].percent_of_strong == pytest.approx(55.0)
    knn = report.router("knn-router")
    assert knn.points[0].strong_share == pytest.approx(0.4) and knn.calls[0].strong_share == pytest.approx(2.0)
    low, high = knn.apgr_interval
    assert low <= knn.apgr <= high and low < high   # 15 questions: a resample can lose the gap's size
    cpt_low, cpt_high = knn.cpt_interval[0]
    assert cpt_low <= knn.cpt[0].percent_of_strong and (cpt_high is None or cpt_high >= knn.cpt[0].percent_of_strong)
    again = cost_curve(bench, cost_matrix(bench.test, PRICES), PER_1M, weights=[0.0], samples=300)
    assert again.router("knn-router").apgr_interval == knn.apgr_interval   # seeded


def test_the_cascade_pays_both_calls_when_it_escalates(bench):  # noqa: F811
    """Cheap hist first; the knn-router estimates hist at 1 on history questions and 0 on math ones. Threshold 0
    never escalates (hist: 5/15 right at 0.1); 0.5 escalates the 10 math questions to alg (right on the 6 algebra
    ones) paying 0.1 + 1.0 for each; 1.01 escalates everything (alg's 6/15 at 1.1)."""
    report = cost_curve(bench, cost_matrix(bench.test, PRICES), PER_1M, weights=[0.0], routers=["cascade"], samples=100)
    by_threshold = {p.threshold: p for p in report.router("cascade").points}
    assert by_threshold[0.0].accuracy == pytest.approx(100 / 3, abs=1e-3) and by_threshold[0.0].cost == pytest.approx(0.1)
    half = by_threshold[0.5]
    assert half.accuracy == pytest.approx(100 * 11 / 15, abs=1e-3) and half.cost == pytest.approx(0.1 + 10 / 15)
    assert half.strong_share == pytest.approx(10 / 15, abs=1e-4) and half.label == "cascade (threshold=0.5)"
    assert by_threshold[1.01].accuracy == pytest.approx(40.0) and by_threshold[1.01].cost == pytest.approx(1.1)


def test_cost_weight_moves_the_task_map_to_cheaper_experts(bench):  # noqa: F811
    report = cost_curve(bench, cost_matrix(bench.test, PRICES), PER_1M, weights=[0.0, 10.0], samples=100)
    for curve in report.routers:
        cheap = curve.points[1]
        assert cheap.picks == {"hist": 1.0} and cheap.cost == pytest.approx(0.1)


def test_paired_bootstrap():
    ones, zeros = np.ones(50), np.zeros(50)
    exact = paired_bootstrap(ones, zeros, names=("a", "b"))
    assert (exact.difference, exact.low, exact.high) == (100.0, 100.0, 100.0) and exact.excludes_zero
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    interval = paired_bootstrap(a, b, samples=500)
    assert interval.low <= interval.difference <= interval.high
    assert interval == paired_bootstrap(a, b, samples=500)   # seeded
    same = paired_bootstrap(a, a, samples=100)
    assert (same.low, same.high) == (0.0, 0.0) and not same.excludes_zero
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:10])


def test_cli_curve_json_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_eval, "get_encoder", BagOfWordsEncoder)
    p = write_split(tmp_path)
    args = ["eval", "curve", "--train-questions", p["train_questions"], "--train-outcomes", p["train_outcomes"],
            "--test-questions", p["test_questions"], "--test-outcomes", p["test_outcomes"], "--k", "3",
            "--knn-k", "3", "--prior", "none", "--cache-dir", "-", "--weights", "0,10", "--bootstrap", "100"]
    assert main([*args, "--json"]) == 2   # no prices and no recorded costs
    assert "needs --prices or per-query costs" in capsys.readouterr().err
    assert main([*args, "--prices", str(tmp_path / "prices.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["strong"]["model"] == "alg" and report["cost_unit"] == PER_1M
    assert [c["router"] for c in report["routers"]] == ["knn-router", "category", "two-stage", "mf-router"]
    assert report["mix_of_singles"]["apgr"] == pytest.approx(0.5) and report["routers"][3]["apgr_interval"]
    assert report["routers"][0]["points"][0]["accuracy"] == 100.0
    pytest.importorskip("matplotlib")
    assert main([*args, "--prices", str(tmp_path / "prices.json"), "--tokens-per-query", "1000,500",
                 "--out", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    assert "$ / query" in out and "APGR" in out and "calls(50%)" in out and "mix of single models: APGR 0.5" in out
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    pools = ["--pool", "all=*", "--pool", "no alg=geo,hist", "--prices", str(tmp_path / "prices.json")]
    assert main([*args, "--router", "knn-router,cascade", "--prices", str(tmp_path / "prices.json")]) == 0
    assert "  threshold=0.5 " in capsys.readouterr().out
    assert main([*args, *pools, "--json"]) == 0
    by_pool = json.loads(capsys.readouterr().out)["pools"]
    assert list(by_pool) == ["all", "no alg"] and by_pool["all"]["n"] == by_pool["no alg"]["n"]
    assert by_pool["all"]["strong"]["model"] == "alg" and by_pool["no alg"]["strong"]["model"] != "alg"
    assert main([*args, *pools, "--out", str(tmp_path / "pools.png")]) == 0
    assert "pool no alg: 2 models" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("pools-*.png")) == ["pools-all.png", "pools-no-alg.png"]


def test_cli_calibrate_finds_the_cost_weight_for_a_strong_call_share(tmp_path, monkeypatch, capsys):
    """On train the knn-router sends the 12 algebra questions of 30 (40%) to the strong alg at cost weight 0;
    asking for 10% needs a positive weight, asking for 50% needs none."""
    import yaml

    monkeypatch.setattr(cli_eval, "get_encoder", BagOfWordsEncoder)
    p = write_split(tmp_path)
    args = ["eval", "calibrate", "--train-questions", p["train_questions"], "--train-outcomes", p["train_outcomes"],
            "--test-questions", p["test_questions"], "--test-outcomes", p["test_outcomes"], "--knn-k", "3",
            "--prior", "none", "--cache-dir", "-", "--prices", str(tmp_path / "prices.json"), "--json"]
    assert main([*args, "--strong-share", "0.1", "--write-config", str(tmp_path / "knn.yaml")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strong_model"] == "alg" and result["share_at_zero"] == pytest.approx(0.4)
    assert result["cost_weight"] > 0 and result["train_share"] <= 0.1 and result["test_share"] <= 0.2
    written = yaml.safe_load((tmp_path / "knn.yaml").read_text())
    assert written["router"]["knn"]["cost_weight"] == result["cost_weight"]
    assert main([*args, "--strong-share", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["cost_weight"] == 0.0
    assert main([*args, "--strong-share", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
