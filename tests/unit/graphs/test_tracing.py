"""Traces carry the routing decision: captured in-process with a callback tracer (no LangSmith endpoint)."""

from coe_router import build_graph
from tests.fakes import CollectingTracer, FailingChat, ScriptedChat


def test_expert_call_is_a_child_run_named_after_the_expert_with_the_decision(config, store):
    models = {"math-model": FailingChat(), "code-model": ScriptedChat(reply=lambda p: "c", seen=[]),
              "general-model": ScriptedChat(reply=lambda p: "g", seen=[])}
    tracer = CollectingTracer()
    graph = build_graph(config, models=models, store=store)
    result = graph.invoke({"query": "solve the equation 5x = 10"},
                          config={"callbacks": [tracer], "run_name": "coe-router", "tags": ["coe-router"]})
    runs = {run.name: run for run in tracer.all_runs()}
    assert {"coe-router", "retriever", "classifier", "router", "expert"} <= set(runs)
    assert runs["coe-router"].outputs["decision"].expert == "generalist"

    failed, answered = runs["mathematician"], runs["generalist"]
    assert failed.error and "connection refused" in failed.error
    meta = answered.extra["metadata"]
    decision = result["decision"]
    assert meta["task"] == "math" and meta["expert"] == "generalist" and meta["role"] == "expert"
    assert meta["routed_expert"] == "mathematician" and meta["failed_experts"] == ["mathematician"]
    assert meta["retrieved_ids"] == [e.id for e in decision.retrieved]
    assert meta["task_map_version"] == decision.task_map_version and meta["classifier"] == "knn"
    assert "task:math" in answered.tags and "expert:generalist" in answered.tags
