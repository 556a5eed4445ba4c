"""Per-run control through the run context (LangGraph `context_schema` read with `Runtime`)."""

import json

import pytest
from pydantic import ValidationError

from coe_router import build_graph, load_config
from coe_router.graphs.context import InvalidContextError
from tests.fakes import ScriptedChat
from tests.unit.conftest import CONFIG, write_config

MATH = "solve the equation for x: 2x + 3 = 7"


def models():
    return {name: ScriptedChat(reply=lambda p, n=name: f"from {n}", seen=[]) for name in CONFIG["models"]}


def test_pin_an_expert_keeps_the_task_and_records_the_override(config, store):
    result = build_graph(config, models=models(), store=store).invoke({"query": MATH}, context={"expert": "coder"})
    decision = result["decision"]
    assert decision.expert == "coder" and decision.task == "math" and result["answer"] == "from code-model"
    assert decision.overrides == {"expert": "coder"} and decision.fallbacks[0] == "mathematician"


def test_pin_a_task_skips_the_classifier(config, store):
    result = build_graph(config, models=models(), store=store).invoke({"query": MATH}, context={"task": "code"})
    assert result["decision"].task == "code" and result["decision"].classifier == "context"
    assert result["decision"].expert == "coder"


def test_fanout_and_threshold_per_run(config, store):
    graph = build_graph(config, models=models(), store=store)
    fanned = graph.invoke({"query": MATH}, context={"fanout": 2})["decision"]
    assert [c.expert for c in fanned.consulted] == ["mathematician", "generalist"]
    mixed = "fix the equation in this python loop"   # its neighbours are split between code and math
    assert graph.invoke({"query": mixed})["decision"].task == "code"
    strict = graph.invoke({"query": mixed}, context={"threshold": 1.0})["decision"]
    assert strict.task == "unknown" and strict.expert == "generalist" and strict.overrides == {"threshold": 1.0}


def test_bad_context_values_are_clear_errors(config, store):
    graph = build_graph(config, models=models(), store=store)
    with pytest.raises(InvalidContextError, match=r"context.expert: no expert named 'ghost'.*coder"):
        graph.invoke({"query": MATH}, context={"expert": "ghost"})
    with pytest.raises(InvalidContextError, match=r"context.task: no task named 'cooking'"):
        graph.invoke({"query": MATH}, context={"task": "cooking"})
    with pytest.raises(ValidationError, match="threshold"):
        graph.invoke({"query": MATH}, context={"threshold": 2})
    with pytest.raises(ValidationError, match="temperature"):
        graph.invoke({"query": MATH}, context={"temperature": 0.5})


def test_cost_weight_buys_a_cheaper_expert_with_accuracy(tmp_path, store):
    board = {"ranking": {"math": ["mathematician", "generalist"]}, "overall_ranking": ["generalist", "mathematician"],
             "accuracy": {"math": {"mathematician": 0.80, "generalist": 0.70}},
             "overall_accuracy": {"mathematician": 0.6, "generalist": 0.65, "coder": 0.5}}
    (tmp_path / "board.json").write_text(json.dumps(board))
    priced = {name: {**spec, "price_per_1m_tokens": price}
              for (name, spec), price in zip(CONFIG["models"].items(), (10.0, 1.0, 1.0))}
    config = load_config(write_config(tmp_path, models=priced, task_map={"from": "board.json"}))
    graph = build_graph(config, models=models(), store=store)
    assert graph.invoke({"query": MATH}, context={"cost_weight": 0.0})["decision"].expert == "mathematician"
    cheap = graph.invoke({"query": MATH}, context={"cost_weight": 0.5})["decision"]
    assert cheap.expert == "generalist"   # 0.70 - 0.5 * 1/10 = 0.65 > 0.80 - 0.5 * 10/10 = 0.30
    assert {c.expert: (c.expected_score, c.price) for c in cheap.candidates}["mathematician"] == (0.80, 10.0)


def test_cost_weight_without_accuracies_says_what_is_missing(config, store):
    with pytest.raises(InvalidContextError, match="cost_weight: no leaderboard accuracy"):
        build_graph(config, models=models(), store=store).invoke({"query": MATH}, context={"cost_weight": 0.3})
