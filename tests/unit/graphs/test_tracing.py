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


def test_an_untraced_decision_builds_no_callback_manager(monkeypatch):
    """No handler hears the call: nothing to annotate, and the router node skips the manager set-up (measured
    70 us a request); with a tracer the decision still lands on its run (the tests above)."""
    from langchain_core.callbacks import CallbackManager

    from coe_router.schema import RoutingDecision
    from coe_router.tracing import annotations

    monkeypatch.setattr(annotations, "get_callback_manager_for_config",
                        lambda config: (_ for _ in ()).throw(AssertionError("built a callback manager")))
    decision = RoutingDecision(task="math", confidence=0.9, classifier="knn", expert="mathematician")
    for config in (None, {}, {"callbacks": None}, {"callbacks": []}, {"callbacks": CallbackManager(handlers=[])}):
        assert annotations.annotate_router_run(config, decision) == 0
        assert annotations.annotate_plan_run(config, [], "synthesizer") == 0
