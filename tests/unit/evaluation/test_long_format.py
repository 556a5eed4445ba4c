"""The long outcomes format, price lists and per-query costs: conversions, and errors that name file:line:column."""

import json

import numpy as np
import pytest

from coe_router.cli.main import main
from coe_router.evaluation.long_format import ScoreRange, read_long
from coe_router.outcomes import (
    OutcomesFileError,
    costs_path_for,
    read_llmrouter_scores,
    read_outcomes,
    write_outcomes,
)
from coe_router.evaluation.prices import (
    PER_1M,
    PER_QUERY,
    TokenPrice,
    parse_tokens,
    read_price_list,
    read_prices,
    routing_prices,
)

HEADER = "question_id,category,question,model,score,cost\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_long_csv_with_graded_scores_and_costs(tmp_path):
    path = write(tmp_path, "long.csv", HEADER + "q1,math,two plus two,a,10,0.002\nq1,math,two plus two,b,5,0.001\n"
                 "q2,law,\"a contract,\nsigned\",a,0,0.003\n")
    data = read_long(path, ScoreRange.parse("0,10"))
    assert data.ids == ["q1", "q2"] and data.models == ["a", "b"] and data.questions[1] == "a contract,\nsigned"
    np.testing.assert_array_equal(data.scores, [[1.0, 0.5], [0.0, np.nan]])
    np.testing.assert_array_equal(data.costs, [[0.002, 0.001], [0.003, np.nan]])
    assert data.categories.tolist() == ["math", "law"]


def test_long_errors_name_file_line_and_column(tmp_path):
    cases = {
        "q1,math,t,a,11,0.1\n": r"long.csv:2:5: column 'score': 11 is outside the declared range \[0, 10\]",
        "q1,math,t,a,high,0.1\n": r"long.csv:2:5: column 'score': expected a number, got 'high'",
        "q1,math,t,a,1,\n": r"long.csv:2:6: column 'cost': no cost",
        "q1,math,t,a,1,0.1\nq1,law,t,b,1,0.1\n": r"long.csv:3:2: column 'category': question q1 is 'law' here",
        "q1,math,t,a,1,0.1\nq1,math,t,a,0,0.1\n": r"long.csv:3:4: column 'model': a second row for question q1",
        "q1,math,t,a,1\n": r"long.csv:2: 5 fields, the header has 6",
    }
    for body, message in cases.items():
        with pytest.raises(OutcomesFileError, match=message):
            read_long(write(tmp_path, "long.csv", HEADER + body), ScoreRange(0, 10))
    with pytest.raises(OutcomesFileError, match=r"bad.csv:1: missing column\(s\) \['score'\]"):
        read_long(write(tmp_path, "bad.csv", "question_id,category,question,model\n"))


def test_clip_clamps_out_of_range_scores(tmp_path):
    path = write(tmp_path, "long.csv", HEADER + "q1,math,t,a,12,0\nq1,math,t,b,-3,0\nq1,math,t,c,2.5,0\n")
    data = read_long(path, ScoreRange.parse("0,10", clip=True))
    np.testing.assert_allclose(data.scores, [[1.0, 0.0, 0.25]])
    with pytest.raises(ValueError, match="MIN < MAX"):
        ScoreRange.parse("5,5")


def test_long_jsonl_tokens_priced_and_errors_with_character_columns(tmp_path):
    prices = {"a": TokenPrice(input=1.0, output=3.0)}
    rows = [{"question_id": "q1", "category": "math", "question": "t", "model": "a", "score": 1,
             "input_tokens": 1000, "output_tokens": 500}]
    path = write(tmp_path, "long.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    data = read_long(path, prices=prices)
    assert data.costs[0, 0] == pytest.approx((1000 * 1.0 + 500 * 3.0) / 1e6)
    with pytest.raises(OutcomesFileError, match="long.jsonl:1:.*no input/output price for 'a'"):
        read_long(path)
    bad = dict(rows[0], question_id="q2", score="x")
    line = json.dumps(bad)
    path = write(tmp_path, "long.jsonl", json.dumps(rows[0]) + "\n" + line + "\n")
    column = line.index('"score"') + 1
    with pytest.raises(OutcomesFileError, match=fr"long.jsonl:2:{column}: column 'score'"):
        read_long(path, prices=prices)
    path = write(tmp_path, "long.jsonl", json.dumps(rows[0]) + "\n" + json.dumps(dict(rows[0], question_id="q2",
                 input_tokens=None, output_tokens=None) | {"model": "a"}) + "\n")
    with pytest.raises(OutcomesFileError, match="long.jsonl:2:.*no cost"):
        read_long(path, prices=prices)
    path = write(tmp_path, "long.jsonl", '{"question_id": "q1", \n')
    with pytest.raises(ValueError, match=r"long.jsonl:1: not valid JSON .*column \d+"):
        read_long(path)


def test_price_lists_ignore_other_models_and_name_the_bad_entry(tmp_path):
    path = write(tmp_path, "p.json", json.dumps({"a": {"input": 1, "output": 3}, "b": 0.5, "zz": "n/a"}, indent=1))
    assert read_price_list(path, ["a", "b"]) == {"a": TokenPrice(1.0, 3.0), "b": TokenPrice(0.5, 0.5)}
    assert read_prices(path, ["a"]) == {"a": 2.0}
    with pytest.raises(OutcomesFileError, match=r"p.json:7:2: model 'zz': expected a price"):
        read_price_list(path)
    with pytest.raises(OutcomesFileError, match=r"no price for model\(s\) \['c'\]"):
        read_price_list(path, ["a", "c"])
    with pytest.raises(OutcomesFileError, match=r"broken.json:1:\d+: not valid JSON"):
        read_price_list(write(tmp_path, "broken.json", '{"a": }'))
    csv_path = write(tmp_path, "p.csv", "model,input,output\na,1,3\nb,oops,1\nother,x,x\n")
    with pytest.raises(OutcomesFileError, match=r"p.csv:3: column 2 \(input\): expected a price"):
        read_price_list(csv_path)
    assert read_price_list(csv_path, ["a"]) == {"a": TokenPrice(1.0, 3.0)}


def test_routing_prices_per_query_or_per_million(tmp_path):
    listed = {"a": TokenPrice(1.0, 3.0), "b": TokenPrice(0.2, 0.2)}
    assert routing_prices(listed, ["a", "b"]) == ({"a": 2.0, "b": pytest.approx(0.2)}, PER_1M)
    prices, unit = routing_prices(listed, ["a"], parse_tokens("1000,500"))
    assert prices == {"a": pytest.approx(0.0025)} and unit == PER_QUERY
    assert parse_tokens("800") == (800.0, 800.0)
    with pytest.raises(ValueError, match="IN,OUT"):
        parse_tokens("1,2,3")


def test_costs_travel_with_the_wide_files_and_llmrouter_costs(tmp_path):
    path = write(tmp_path, "long.csv", HEADER + "q1,math,t one,a,1,0.5\nq1,math,t one,b,0,0.25\nq2,law,t two,a,0,1\n"
                 "q2,law,t two,b,1,2\n")
    data = read_long(path)
    write_outcomes(data, tmp_path / "w" / "questions.jsonl", tmp_path / "w" / "correctness.csv")
    assert costs_path_for(tmp_path / "w" / "correctness.csv").exists()
    assert costs_path_for("x/train.csv").name == "train.costs.csv"
    again = read_outcomes(tmp_path / "w" / "correctness.csv", tmp_path / "w" / "questions.jsonl")
    np.testing.assert_array_equal(again.costs, data.costs)
    assert again.take([1]).costs.tolist() == [[1.0, 2.0]] and again.select_models(["b"]).costs.tolist() == [[0.25], [2.0]]
    scores = tmp_path / "s.jsonl"
    scores.write_text(json.dumps({"split": "test", "query": "q", "task_name": "t", "scores": {"m": 1},
                                  "costs": {"m": 0.01}}) + "\n")
    assert read_llmrouter_scores(scores)["test"].costs.tolist() == [[0.01]]


def test_cli_import_long(tmp_path, capsys):
    path = write(tmp_path, "long.csv", HEADER + "q1,math,t,a,4,0.5\nq1,math,t,b,2,0.25\n")
    assert main(["eval", "import", "--long", str(path), "--score-range", "0,4", "--out", str(tmp_path / "o")]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["n"] == 1 and written["models"] == ["a", "b"] and written["costs"].endswith("costs.csv")
    assert (tmp_path / "o" / "correctness.csv").read_text().splitlines() == ["question_id,category,a,b", "q1,math,1,0.5"]
    assert main(["eval", "import", "--long", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "long.csv:2:5: column 'score': 4 is outside the declared range [0, 1]" in capsys.readouterr().err
