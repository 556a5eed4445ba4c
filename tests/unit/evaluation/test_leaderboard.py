"""Leaderboard from recorded outcomes and from aggregate tables (CoE-Ops eq. 4, 5, 8), its JSON and its CLI."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from coe_router.cli.main import main
from coe_router.config import load_task_map_file
from coe_router.evaluation.leaderboard import (
    build_leaderboard,
    leaderboard_from_table,
    parse_counts,
    rank_models,
    read_leaderboard,
    write_leaderboard,
)
from coe_router.outcomes import OutcomesFileError, read_outcomes, read_prices, write_outcomes
from tests.unit.conftest import write_config

# 4 math questions, 2 history questions; models named like the experts of the shared test config.
ROWS = [
    ("q1", "math", "solve 2x + 3 = 7", {"mathematician": 1, "generalist": 1, "coder": 0}),
    ("q2", "math", "integrate x squared", {"mathematician": 1, "generalist": 0, "coder": 0}),
    ("q3", "math", "sum of the first ten integers", {"mathematician": 1, "generalist": 1, "coder": 1}),
    ("q4", "math", "derivative of sin x", {"mathematician": 0, "generalist": 1, "coder": 0}),
    ("h1", "history", "when did rome fall", {"mathematician": 0, "generalist": 1, "coder": 1}),
    ("h2", "history", "who won at waterloo", {"mathematician": 0, "generalist": 1, "coder": 1}),
]
MODELS = ["mathematician", "generalist", "coder"]


def write_data(tmp_path: Path, rows=ROWS, models=MODELS, blanks=()) -> tuple[Path, Path]:
    questions, outcomes = tmp_path / "questions.jsonl", tmp_path / "correctness.csv"
    questions.write_text("".join(json.dumps({"question_id": q, "category": c, "question": t}) + "\n"
                                 for q, c, t, _ in rows), encoding="utf-8")
    with outcomes.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question_id", "category", *models])
        for q, c, _, marks in rows:
            writer.writerow([q, c, *("" if (q, m) in blanks else marks[m] for m in models)])
    return questions, outcomes


def test_per_task_accuracy_best_expert_and_best_average(tmp_path):
    questions, outcomes = write_data(tmp_path)
    board = build_leaderboard(read_outcomes(outcomes, questions))
    assert board.accuracy["math"] == {"mathematician": 0.75, "generalist": 0.75, "coder": 0.25}
    assert board.count["history"]["coder"] == 2 and board.task_counts == {"history": 2, "math": 4}
    # math is a tie at 0.75: without prices the better overall model (generalist, 5/6) wins.
    assert board.best == {"history": "generalist", "math": "generalist"}
    assert board.ranking["math"] == ["generalist", "mathematician", "coder"]
    # eq. 8 counts questions: generalist 5/6, coder 3/6, mathematician 3/6 (no prices: the tie goes by name)
    assert board.overall_accuracy["generalist"] == pytest.approx(5 / 6, abs=1e-6)
    assert board.best_average == "generalist"
    assert board.overall_ranking == ["generalist", "coder", "mathematician"]


def test_tie_is_broken_by_the_lower_price(tmp_path):
    questions, outcomes = write_data(tmp_path)
    board = build_leaderboard(read_outcomes(outcomes, questions),
                              prices={"mathematician": 0.2, "generalist": 0.9, "coder": 0.1})
    assert board.best["math"] == "mathematician"          # 0.75 each: 0.2 < 0.9
    assert board.ranking["math"][:2] == ["mathematician", "generalist"]
    assert board.overall_ranking[1:] == ["coder", "mathematician"]  # 3/6 each: coder is cheaper
    assert board.prices["coder"] == 0.1


def test_rank_order_rules():
    """Ties: known price before unknown; a model with no score for the task goes last."""
    ranked = rank_models({"a": 0.5, "b": 0.5}, ["b", "a"], prices={"a": 1.0}, overall={"a": 0.1, "b": 0.9})
    assert ranked == ["a", "b"]  # known price beats unknown price on a tie
    unranked = rank_models({"a": 0.4}, ["b", "a"])
    assert unranked == ["a", "b"]  # a model without a score for the task goes last


def test_model_subset_and_missing_policies(tmp_path):
    questions, outcomes = write_data(tmp_path, blanks={("q2", "coder")})
    data = read_outcomes(outcomes, questions)
    assert np.isnan(data.scores[1, 2])
    dropped = build_leaderboard(data)
    assert dropped.task_counts["math"] == 3 and dropped.accuracy["math"]["coder"] == pytest.approx(1 / 3, abs=1e-6)
    per_model = build_leaderboard(data, missing="per-model")
    assert per_model.count["math"] == {"mathematician": 4, "generalist": 4, "coder": 3}
    zero = build_leaderboard(data, missing="zero")
    assert zero.accuracy["math"]["coder"] == 0.25
    subset = build_leaderboard(data, models=["mathematician", "generalist"])
    assert subset.models == ["mathematician", "generalist"] and subset.task_counts["math"] == 4
    with pytest.raises(ValueError, match="unknown model"):
        build_leaderboard(data, models=["nobody"])


def test_bad_outcome_files_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,category,m\nq1,math,2\n", encoding="utf-8")
    with pytest.raises(OutcomesFileError, match=r"bad.csv:2:3: .*outside"):
        read_outcomes(bad)
    questions, outcomes = write_data(tmp_path)
    text = questions.read_text().replace('"category": "math", "question": "solve', '"category": "law", "question": "solve')
    questions.write_text(text)
    with pytest.raises(OutcomesFileError, match="q1 is 'math' here but 'law'"):
        read_outcomes(outcomes, questions)


def test_leaderboard_json_drives_a_config_task_map(tmp_path):
    questions, outcomes = write_data(tmp_path)
    path = write_leaderboard(build_leaderboard(read_outcomes(outcomes, questions)), tmp_path / "lb.json")
    data = json.loads(path.read_text())
    assert {"ranking", "overall_ranking", "best", "best_average", "accuracy", "count"} <= set(data)
    assert read_leaderboard(path).best == {"history": "generalist", "math": "generalist"}
    from coe_router import load_config

    config = load_config(write_config(tmp_path, task_map={"from": "lb.json"}))
    ranking, overall_best, _, _ = load_task_map_file(config, config.task_map)
    assert ranking["math"] == ["generalist", "mathematician", "coder"]
    assert overall_best == "generalist"




def test_aggregate_table_with_counts_row_and_percentages(tmp_path):
    table = tmp_path / "board.csv"
    table.write_text("ModelName,plan,code,AVG\nA,50,80,77.5\nB,90,70,72.5\ncount,10,90,\n", encoding="utf-8")
    board = leaderboard_from_table(table)
    assert board.tasks == ["plan", "code"] and board.task_counts == {"plan": 10, "code": 90}
    assert board.accuracy["plan"] == {"A": 0.5, "B": 0.9}
    assert board.best == {"plan": "B", "code": "A"}
    assert board.overall_accuracy["A"] == pytest.approx(0.77, abs=1e-9)   # (50*10 + 80*90) / 100
    assert board.best_average == "A"
    equal = leaderboard_from_table(table, counts={"plan": 1, "code": 1})
    assert equal.best_average == "B"  # (50+80)/2 = 65 < (90+70)/2 = 80
    with pytest.raises(ValueError, match="not in"):
        leaderboard_from_table(table, counts={"deploy": 3, "plan": 1, "code": 1})


def test_published_devops_table_reproduces_its_count_weighted_average():
    from reports.data import find_data_dir
    from reports.devops import devops_counts

    DEVOPS = find_data_dir() / "devops-eval"  # noqa: N806 - the repository's copy

    devops, aiops = devops_counts(DEVOPS / "subcategories.csv")
    assert devops["operate"] == 621 and sum(devops.values()) == 3137 and aiops["LogParsing"] == 350
    board = leaderboard_from_table(DEVOPS / "leaderboard_aiops_zero_shot.csv", counts=aiops)
    with (DEVOPS / "leaderboard_aiops_zero_shot.csv").open() as handle:
        published = {row["ModelName"]: float(row["AVG"]) for row in csv.DictReader(handle)}
    assert all(abs(100 * board.overall_accuracy[m] - published[m]) < 0.011 for m in board.models)
    assert board.best_average == "Qwen-14B-Base" and board.best["LogParsing"] == "Qwen-14B-Base"


def test_parse_counts_and_prices(tmp_path):
    assert parse_counts("plan=66, code=1321") == {"plan": 66, "code": 1321}
    (tmp_path / "c.json").write_text('{"plan": 3}')
    assert parse_counts(tmp_path / "c.json") == {"plan": 3}
    (tmp_path / "p.json").write_text(json.dumps({"a": 0.5, "b": {"input_price": 0.1, "output_price": 0.3}}))
    assert read_prices(tmp_path / "p.json") == {"a": 0.5, "b": pytest.approx(0.2)}
    (tmp_path / "p.csv").write_text("model,price\na,1.5\n")
    assert read_prices(tmp_path / "p.csv") == {"a": 1.5}


def test_write_outcomes_round_trips(tmp_path):
    questions, outcomes = write_data(tmp_path, blanks={("h1", "coder")})
    data = read_outcomes(outcomes, questions)
    write_outcomes(data, tmp_path / "out.jsonl", tmp_path / "out.csv")
    again = read_outcomes(tmp_path / "out.csv", tmp_path / "out.jsonl")
    assert again.ids == data.ids and again.questions == data.questions
    np.testing.assert_array_equal(np.isnan(again.scores), np.isnan(data.scores))
    np.testing.assert_array_equal(np.nan_to_num(again.scores), np.nan_to_num(data.scores))


def test_cli_build_show_and_plot(tmp_path, capsys):
    questions, outcomes = write_data(tmp_path)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"mathematician": 0.2, "generalist": 0.9, "coder": 0.1}))
    out = tmp_path / "lb.json"
    assert main(["leaderboard", "build", "--outcomes", str(outcomes), "--questions", str(questions),
                 "--prices", str(prices), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["math"] == "mathematician"
    assert main(["leaderboard", "show", str(out)]) == 0
    assert "mathematician 75.0" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    # a radar needs 3 tasks: build one from a table
    table = tmp_path / "t.csv"
    table.write_text("model,a,b,c\nx,0.5,0.6,0.7\ny,0.7,0.6,0.5\n")
    assert main(["leaderboard", "build", "--table", str(table), "--out", str(tmp_path / "t.json")]) == 0
    assert main(["leaderboard", "plot", str(tmp_path / "t.json"), "--out", str(tmp_path / "radar.png")]) == 0
    assert (tmp_path / "radar.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    table = tmp_path / "t.csv"
    table.write_text("model,a,b,c\nx,0.5,0.6,0.7\n")
    assert main(["leaderboard", "build", "--table", str(table), "--out", str(tmp_path / "t.json")]) == 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["leaderboard", "plot", str(tmp_path / "t.json"), "--out", str(tmp_path / "r.png")]) == 2
    assert "pip install 'coe-router[eval]'" in capsys.readouterr().err
