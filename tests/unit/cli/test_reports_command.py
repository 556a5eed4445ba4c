"""`python -m reports` (the docs/RESULTS.md generator at the repository root, not installed): its command line,
the MMLU-Pro model metadata file, and the fast DevOps-Eval section against the committed docs/RESULTS.md."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_python_dash_m_reports_help():
    done = subprocess.run(
        [sys.executable, "-m", "reports", "--help"], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--out", "--data", "--cache-dir", "--seeds", "--no-ablation"):
        assert flag in done.stdout


def test_mmlu_pro_model_metadata_gives_the_documented_pools():
    from reports.mmlu_pro import mmlu_pools, mmlu_pro_models

    models = mmlu_pro_models()
    assert len(models) == 29
    assert models["gemini-1.5-pro-002"].params_b is None and not models["gemini-1.5-pro-002"].open_weights
    assert models["DeepSeek-Coder-V2"].note == "MoE, 21B active; DeepSeek licence"
    assert models["Mixtral-8x7B-v0.1"].params_b == pytest.approx(46.7)
    assert list(mmlu_pools()) == ["all 29 models", "open weights (27)", "<= 8B parameters (14)"]


def test_devops_section_matches_the_committed_results():
    from reports.data import find_data_dir
    from reports.devops import devops_section

    section = devops_section(find_data_dir())  # the repository's copy of the data
    assert section.startswith("## DevOps-Eval")
    assert section in (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")


def test_curve_tables_and_figures_folder(tmp_path):
    """The report's quality/cost tables and its figures folder, on the synthetic bench of the replay tests."""
    from coe_router.evaluation.curves import cost_curve
    from coe_router.evaluation.prices import PER_1M, cost_matrix
    from coe_router.evaluation.replay import ReplayBench
    from coe_router.routing.query_router import KnnRouterParams
    from reports.tables import Figures, curve_points_table, curve_summary_table, interval_lines
    from tests.fakes import BagOfWordsEncoder
    from tests.unit.evaluation.test_replay import PRICES, TEST, TRAIN, make

    encoder = BagOfWordsEncoder()
    train, test = make(TRAIN, "tr"), make(TEST, "te")
    bench = ReplayBench(train, test, encoder.encode(train.questions), encoder.encode(test.questions), prices=PRICES,
                        classifier_k=3, knn_params=KnnRouterParams(k=3, prior="none"))
    report = cost_curve(bench, cost_matrix(test, PRICES), PER_1M, weights=[0.0, 10.0], samples=100)
    summary = curve_summary_table(report)
    assert summary.splitlines()[2].startswith("| knn-router | ") and "lambda=0: 100.00% at 0.567 (57%)" in summary
    points = curve_points_table(report).splitlines()
    assert points[2].startswith("| 0 | **100.00 / 0.567** |") and len(points) == 4
    assert "knn-router (lambda=0) minus best-single: +60.00" in interval_lines(report)
    seen = []
    line = Figures(tmp_path / "img").draw("x.png", "alt text", lambda *args: seen.append(args), 1, 2)
    assert line == "![alt text](img/x.png)" and seen == [(1, 2, tmp_path / "img" / "x.png")]


def test_the_repository_carries_the_data_and_unpacks_it_once(tmp_path, monkeypatch):
    from reports import data

    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("COE_DATA_DIR", raising=False)
    folder = data.find_data_dir()
    assert folder.parent == tmp_path / "data"
    for part in ("mmlu-pro-model-outputs/correctness.csv", "mmlu-pro-model-outputs/LICENSE",
                 "llmrouter-ulab/scores_with_task.jsonl", "llmrouter-ulab/llm_candidates/default_llm.json",
                 "devops-eval/leaderboard_devops_zero_shot.csv", "README.md"):
        assert (folder / part).is_file(), part
    assert data.find_data_dir() == folder and len(list((tmp_path / "data").iterdir())) == 1  # unpacked once
    with pytest.raises(FileNotFoundError, match="does not hold mmlu-pro-model-outputs"):
        data.find_data_dir(tmp_path)


def test_pool_report_tables_carry_the_learned_routers_against_the_map_and_the_knn_router():
    from reports.pools import evaluate_pool
    from reports.tables import learned_table, learned_tuning_line, router_table
    from tests.fakes import BagOfWordsEncoder
    from tests.unit.evaluation.test_replay import TEST, TRAIN, make

    encoder = BagOfWordsEncoder()
    train, test = make(TRAIN, "tr"), make(TEST, "te")
    report = evaluate_pool("tiny", train, test, encoder.encode(train.questions), encoder.encode(test.questions))
    assert [r.router for r in report.results][-2:] == ["learned-router", "mf-router"]
    header, _, *rows = router_table(report).splitlines()
    assert "vs knn-router [95% CI]" in header and len(rows) == 8
    learned = learned_table({"tiny": report}).splitlines()
    assert len(learned) == 4 and learned[2].startswith("| tiny | learned-router | ")
    assert learned_tuning_line(report).startswith("learned-router settings chosen by 5-fold CV on train: gold-task prior x")
