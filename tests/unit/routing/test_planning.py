"""Expert planning with fakes: a plan routes each subtask by task, chains outputs, and falls back when invalid."""

import json

from coe_router import build_graph, load_config
from tests.fakes import ScriptedChat
from tests.unit.conftest import CONFIG, write_config

PLAN = {"subtasks": [
    {"text": "compute the sum of the first ten integers", "task": "math"},
    {"text": "write a python function that returns that sum", "task": "code"},
]}


def plan_config(tmp_path, mode="plan", **extra):
    models = {**CONFIG["models"], "planner-model": {"provider": "openai", "model": "p", "base_url": "http://127.0.0.1:9/v1"}}
    return load_config(write_config(tmp_path, models=models, mode=mode,
                                    planner={"model": "planner-model", "max_steps": 3}, **extra))


def models(planner_reply, synth="FINAL"):
    def planner(prompt):
        if prompt.startswith("Experts worked"):
            return synth
        return planner_reply(prompt) if callable(planner_reply) else planner_reply

    return {
        "math-model": ScriptedChat(reply=lambda p: "55", seen=[]),
        "code-model": ScriptedChat(reply=lambda p: "def total(): return 55" if "55" in p else "no context", seen=[]),
        "general-model": ScriptedChat(reply=lambda p: "general", seen=[]),
        "planner-model": ScriptedChat(reply=planner, seen=[]),
    }


def test_plan_routes_each_step_by_task_and_chains_outputs(tmp_path, store):
    m = models(json.dumps(PLAN))
    result = build_graph(plan_config(tmp_path), models=m, store=store).invoke({"query": "sum 1..10 then code it"})
    steps = result["steps"]
    assert [(s.task, s.expert) for s in steps] == [("math", "mathematician"), ("code", "coder")]
    assert steps[0].output == "55"
    assert steps[1].output == "def total(): return 55"          # step 2's expert saw step 1's output
    assert "Step 1 (compute the sum" in m["code-model"].seen[0]
    assert result["plan_status"] == "planned" and result["answer"] == "FINAL"


def test_planner_task_names_must_be_tasks_not_models(tmp_path, store):
    plan = {"subtasks": [{"text": "solve the equation 2x = 4", "task": "gpt-5"},
                         {"text": "write a python function", "task": "coder"}]}
    result = build_graph(plan_config(tmp_path), models=models(json.dumps(plan)), store=store).invoke({"query": "q"})
    assert [s.expert for s in result["steps"]] == ["mathematician", "coder"]   # decided by the classifier


def test_invalid_plan_falls_back_to_single_shot(tmp_path, store):
    result = build_graph(plan_config(tmp_path), models=models("sure! first do math, then code"), store=store).invoke(
        {"query": "write a python function to reverse a list"})
    assert result["plan_status"].startswith("fallback: no JSON object")
    assert len(result["steps"]) == 1 and result["steps"][0].expert == "coder"
    assert result["answer"] == result["steps"][0].output


def test_long_plans_are_trimmed_to_max_steps(tmp_path, store):
    plan = {"subtasks": [{"text": f"step {i} solve equation", "task": "math"} for i in range(6)]}
    result = build_graph(plan_config(tmp_path), models=models(json.dumps(plan)), store=store).invoke({"query": "q"})
    assert len(result["steps"]) == 3 and result["plan_status"] == "planned (trimmed to 3 steps)"


def test_auto_mode_single_subtask_is_plain_routing(tmp_path, store):
    plan = {"subtasks": [{"text": "reverse a list", "task": "code"}]}
    m = models(json.dumps(plan))
    graph = build_graph(plan_config(tmp_path, mode="auto"), models=m, store=store)
    result = graph.invoke({"query": "please write a python function to reverse a list"})
    assert result["plan_status"] == "single" and len(result["steps"]) == 1
    assert result["steps"][0].text == "please write a python function to reverse a list"
    assert "return exactly one subtask" in m["planner-model"].seen[0]


def test_planning_graph_shows_the_loop(tmp_path, store):
    graph = build_graph(plan_config(tmp_path), models=models(json.dumps(PLAN)), store=store)
    drawn = graph.get_graph()
    assert {"planner", "step", "synthesizer"} <= set(drawn.nodes)
    assert any(e.source == "step" and e.target == "step" for e in drawn.edges)


def test_planner_task_is_used_when_the_classifier_cannot_place_a_step(tmp_path, store):
    plan = {"subtasks": [{"text": "zzz qqq", "task": "code"}, {"text": "solve the equation", "task": "code"}]}
    result = build_graph(plan_config(tmp_path), models=models(json.dumps(plan)), store=store).invoke({"query": "q"})
    assert [(s.task, s.expert) for s in result["steps"]] == [("code", "coder"), ("math", "mathematician")]
    assert result["steps"][1].output == "55"
