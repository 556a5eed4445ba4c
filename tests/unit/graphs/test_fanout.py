"""Rule-based gating and fan-out: several experts answer in parallel; the aggregator votes or refines."""

from coe_router import build_graph, load_config
from coe_router.nodes import ExpertsFailedError
from tests.fakes import FailingChat, ScriptedChat
from tests.unit.conftest import CONFIG, write_config

RULES = {"kind": "rules", "rules": {"math": [r"\bequation\b", r"\bsum\b"], "code": [r"\bpython\b"],
                                     "history": [r"\bwar\b"]}}


def fan_models(**replies):
    base = {"math-model": "the answer is (B)", "code-model": "the answer is (C)", "general-model": "the answer is (B)"}
    base.update(replies)
    return {name: (FailingChat() if reply is None else ScriptedChat(reply=lambda p, r=reply: r, seen=[]))
            for name, reply in base.items()}


def test_rules_match_several_tasks_and_every_best_expert_is_consulted(tmp_path):
    config = load_config(write_config(tmp_path, classifier=RULES))
    graph = build_graph(config, models=fan_models(), store=None)
    result = graph.invoke({"query": "write python code for the sum", "options": ["a", "b", "c"]})
    consulted = result["decision"].consulted
    assert [c.expert for c in consulted] == ["mathematician", "coder"]
    assert {c.choice for c in consulted} == {"B", "C"}
    # 1-1 tie: broken by rank (math matched first, its expert ranks first)
    assert result["choice"] == "B" and result["decision"].aggregation == "vote 1/2"
    assert result["decision"].expert == "mathematician"


def test_fanout_k_majority_vote(tmp_path, store):
    config = load_config(write_config(tmp_path, fanout=3))
    models = fan_models(**{"math-model": "the answer is (A)", "code-model": "so the answer is (B)"})
    result = build_graph(config, models=models, store=store).invoke(
        {"query": "solve the equation x + 1 = 2", "options": ["1", "2", "3"]})
    assert [c.expert for c in result["decision"].consulted] == ["mathematician", "generalist", "coder"]
    assert result["choice"] == "B" and result["decision"].aggregation == "vote 2/3"
    assert result["decision"].expert == "generalist"


def test_failed_expert_in_fanout_is_recorded_and_others_vote(tmp_path, store):
    config = load_config(write_config(tmp_path, fanout=3))
    result = build_graph(config, models=fan_models(**{"math-model": None}), store=store).invoke(
        {"query": "solve the equation x + 1 = 2", "options": ["1", "2", "3"]})
    assert "mathematician" in result["decision"].errors
    assert result["choice"] in {"B", "C"} and result["decision"].aggregation.endswith("/2")


def test_all_fanout_experts_failing_raises(tmp_path, store):
    config = load_config(write_config(tmp_path, fanout=2))
    try:
        build_graph(config, models={n: FailingChat() for n in CONFIG["models"]}, store=store).invoke(
            {"query": "solve the equation"})
    except ExpertsFailedError as error:
        assert set(error.errors) == {"mathematician", "generalist"}
    else:
        raise AssertionError("expected ExpertsFailedError")


def test_free_text_fanout_is_refined_by_the_synthesizer(tmp_path):
    models_cfg = {**CONFIG["models"], "synth": {"provider": "openai", "model": "s", "base_url": "http://127.0.0.1:9/v1"}}
    config = load_config(write_config(tmp_path, models=models_cfg, classifier=RULES, planner={"model": "synth"}))
    synth = ScriptedChat(reply=lambda p: "combined", seen=[])
    models = {**fan_models(**{"math-model": "fifty five", "code-model": "sum(range(11))"}), "synth": synth}
    result = build_graph(config, models=models, store=None).invoke({"query": "python code for the sum 1..10"})
    assert result["answer"] == "combined" and result["decision"].aggregation == "refine"
    assert "Expert mathematician:\nfifty five" in synth.seen[0] and "Expert coder:" in synth.seen[0]


def test_single_rule_match_does_not_fan_out(tmp_path):
    config = load_config(write_config(tmp_path, classifier=RULES))
    result = build_graph(config, models=fan_models(), store=None).invoke({"query": "when did the war end"})
    assert result["decision"].expert == "generalist" or result["decision"].task == "history"
    assert result["decision"].consulted == []
