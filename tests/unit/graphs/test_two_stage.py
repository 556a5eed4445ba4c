"""The compiled graph with fakes: node names, outputs, streaming, and embedding it as a subgraph."""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from coe_router import RoutingDecision, build_graph
from tests.fakes import CollectingTracer, FailingChat, ScriptedChat


def fake_models():
    return {
        "math-model": ScriptedChat(reply=lambda p: "The answer is 5.", seen=[]),
        "code-model": ScriptedChat(reply=lambda p: "def rev(xs): return xs[::-1]", seen=[]),
        "general-model": ScriptedChat(reply=lambda p: "general answer", seen=[]),
    }


def test_graph_has_the_named_nodes(config, store):
    graph = build_graph(config, models=fake_models(), store=store)
    assert {"router", "expert", "consult", "aggregator"} <= set(graph.get_graph().nodes)


def test_the_router_step_runs_its_four_parts_as_traced_child_runs(config, store):
    """One graph step, four child runs: a trace still shows each part, in order, under the router node."""
    tracer = CollectingTracer()
    graph = build_graph(config, models=fake_models(), store=store)
    graph.invoke({"query": "solve the equation 3x + 1 = 16 for x"}, config={"callbacks": [tracer]})
    router = next(run for run in tracer.all_runs() if run.name == "router")
    children = sorted((run for run in tracer.all_runs() if run.parent_run_id == router.id),
                      key=lambda run: run.start_time)
    parts = {run.name: run for run in children}
    assert list(parts) == ["intake", "retriever", "classifier", "expert_choice", "dispatch"]  # dispatch: the edge
    assert parts["intake"].outputs["query"] == "solve the equation 3x + 1 = 16 for x"
    assert parts["retriever"].outputs["retrieved"][0].task == "math"
    assert parts["classifier"].inputs["retrieved"] == parts["retriever"].outputs["retrieved"]  # sees the one before
    assert parts["classifier"].outputs["task_decision"].task == "math"
    assert parts["expert_choice"].outputs["decision"].expert == "mathematician"


def test_invoke_routes_by_retrieved_examples(config, store):
    graph = build_graph(config, models=fake_models(), store=store)
    result = graph.invoke({"query": "solve the equation 3x + 1 = 16 for x"})
    decision = result["decision"]
    assert isinstance(decision, RoutingDecision)
    assert decision.task == "math" and decision.expert == "mathematician"
    assert decision.fallbacks[0] == "generalist"
    assert decision.retrieved and decision.retrieved[0].task == "math"
    assert decision.classifier == "knn" and 0 < decision.confidence <= 1
    assert result["answer"] == "The answer is 5."
    assert set(result) <= {"answer", "choice", "decision", "messages"}


def test_code_question_goes_to_coder(config, store):
    result = build_graph(config, models=fake_models(), store=store).invoke({"query": "write a python function to sort"})
    assert result["decision"].expert == "coder"


def test_unknown_task_goes_to_best_average_expert(config, store):
    result = build_graph(config, models=fake_models(), store=store).invoke({"query": "zzz qqq"})
    assert result["decision"].task == "unknown"
    assert result["decision"].expert == "generalist"


def test_failed_expert_falls_back_inside_the_graph(config, store):
    models = {**fake_models(), "math-model": FailingChat()}
    result = build_graph(config, models=models, store=store).invoke({"query": "what is the integral of x"})
    assert result["decision"].expert == "generalist"
    assert result["decision"].tried == ["mathematician", "generalist"]


def test_stream_yields_each_node_in_order(config, store):
    graph = build_graph(config, models=fake_models(), store=store)
    order = [next(iter(chunk)) for chunk in graph.stream({"query": "fix the python bug"}, stream_mode="updates")]
    assert order == ["router", "expert"]


async def test_ainvoke(config, store):
    graph = build_graph(config, models=fake_models(), store=store)
    result = await graph.ainvoke({"query": "who won the battle of hastings"})
    assert result["decision"].task == "history"


def test_embeds_as_a_subgraph_in_a_parent_app(config, store):
    router = build_graph(config, models=fake_models(), store=store)

    class AppState(TypedDict, total=False):
        query: str
        answer: str
        shouted: str

    app = StateGraph(AppState)
    app.add_node("route", router)
    app.add_node("shout", lambda s: {"shouted": s["answer"].upper()})
    app.add_edge(START, "route")
    app.add_edge("route", "shout")
    app.add_edge("shout", END)
    out = app.compile().invoke({"query": "compute the sum of 2 and 3"})
    assert out["shouted"] == "THE ANSWER IS 5."


def test_llm_classifier_graph_needs_no_store(tmp_path):
    from coe_router import load_config
    from tests.unit.conftest import write_config

    config = load_config(write_config(tmp_path, classifier={"kind": "llm", "model": "general-model", "use_examples": False}))
    models = {**fake_models(), "general-model": ScriptedChat(reply=lambda p: "***Task: code***", seen=[])}
    result = build_graph(config, models=models).invoke({"query": "anything"})
    assert result["decision"].task == "code" and result["decision"].retrieved == []


def test_decide_gives_the_graphs_decision_without_asking_an_expert(config, store):
    from coe_router import decide

    models = {name: FailingChat() for name in fake_models()}  # any expert call would fail
    graph = build_graph(config, models=models, store=store)
    decision = decide(graph, "solve the equation 3x + 1 = 16 for x")
    assert decision.task == "math" and decision.expert == "mathematician" and decision.retrieved
    assert decide(graph, "solve 2x = 4", context={"expert": "coder"}).expert == "coder"
