"""Push/pop of experts on a built graph, without rebuilding it."""

import pytest

from coe_router import build_graph
from coe_router.config import ExpertSpec
from coe_router.routing.pool import UnknownExpertError
from tests.fakes import ScriptedChat


def fakes():
    return {name: ScriptedChat(reply=lambda p, n=name: f"from {n}", seen=[])
            for name in ("math-model", "code-model", "general-model")}


def test_add_expert_for_a_task_takes_effect_at_once(config, store):
    graph = build_graph(config, models=fakes(), store=store)
    query = {"query": "solve the equation 3x = 9"}
    assert graph.invoke(query)["decision"].expert == "mathematician"
    graph.pool.add("prover", ExpertSpec(model="lean"), ScriptedChat(reply=lambda p: "QED", seen=[]), tasks=["math"])
    result = graph.invoke(query)
    assert result["decision"].expert == "prover" and result["answer"] == "QED"
    assert result["decision"].fallbacks[0] == "mathematician"


def test_remove_expert_reroutes_and_changes_map_version(config, store):
    graph = build_graph(config, models=fakes(), store=store)
    before = graph.invoke({"query": "write a python function"})["decision"]
    graph.pool.remove("coder")
    after = graph.invoke({"query": "write a python function"})["decision"]
    assert before.expert == "coder" and after.expert == "generalist"
    assert after.task_map_version != before.task_map_version
    assert "coder" not in after.fallbacks


def test_removing_the_best_average_expert_promotes_the_next(config, store):
    graph = build_graph(config, models=fakes(), store=store)
    graph.pool.remove("generalist")
    assert graph.pool.task_map.default_expert in {"mathematician", "coder"}
    assert graph.invoke({"query": "zzz"})["decision"].expert == graph.pool.task_map.default_expert


def test_remap_and_errors(config, store):
    graph = build_graph(config, models=fakes(), store=store)
    graph.pool.remap("code", ["generalist", "coder"])
    assert graph.invoke({"query": "fix the python bug"})["decision"].expert == "generalist"
    with pytest.raises(UnknownExpertError):
        graph.pool.remap("code", ["ghost"])
    with pytest.raises(ValueError, match="already exists"):
        graph.pool.add("coder", ExpertSpec(model="x"), ScriptedChat(seen=[]))
    with pytest.raises(UnknownExpertError):
        graph.pool.remove("ghost")
