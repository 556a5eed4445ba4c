"""Checkpoints and human review of "unknown" queries: the run pauses, a person picks, it resumes from the checkpoint."""

import pytest
from langgraph.types import Command

from coe_router import ConfigError, build_graph, load_config
from tests.fakes import ScriptedChat
from tests.unit.conftest import write_config


def models():
    return {name: ScriptedChat(reply=lambda p, n=name: f"answer from {n}", seen=[])
            for name in ("math-model", "code-model", "general-model")}


def review_config(tmp_path, checkpointer="sqlite"):
    return load_config(write_config(tmp_path, persistence={
        "checkpointer": checkpointer, "path": str(tmp_path / "ckpt.sqlite"), "review_unknown": True}))


def test_review_needs_a_checkpointer(tmp_path):
    with pytest.raises(ConfigError, match="persistence.review_unknown"):
        load_config(write_config(tmp_path, persistence={"review_unknown": True}))


def test_unknown_query_waits_for_review_then_resumes_with_a_task(tmp_path, store):
    graph = build_graph(review_config(tmp_path), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-1"}}
    paused = graph.invoke({"query": "zzz qqq"}, thread)
    request = paused["__interrupt__"][0].value
    assert request["query"] == "zzz qqq" and "code" in request["tasks"] and "coder" in request["experts"]

    # A new process would rebuild the graph on the same SQLite file and resume the same thread.
    resumed = build_graph(review_config(tmp_path), models=models(), store=store).invoke(
        Command(resume={"task": "code"}), thread)
    assert resumed["decision"].task == "code" and resumed["decision"].expert == "coder"
    assert resumed["decision"].classifier == "knn+review"
    assert resumed["answer"] == "answer from code-model"


def test_a_resumed_review_is_not_classified_again(tmp_path, store):
    """The pause is its own node: resuming runs only the review, so the person's answer is used even when the
    classifier would now decide otherwise (here: resumed without the run context that made it unsure)."""
    graph = build_graph(review_config(tmp_path, "memory"), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-5"}}
    paused = graph.invoke({"query": "write a python function to solve the equation"}, thread,
                          context={"threshold": 1.0})
    assert paused["__interrupt__"] and graph.get_state(thread).next == ("review",)
    resumed = graph.invoke(Command(resume={"task": "code"}), thread)
    assert resumed["decision"].task == "code" and resumed["decision"].classifier == "knn+review"


def _paused_by_the_old_router(thread_id: str):
    """A checkpointer holding a thread paused as checkpoints written before the review node existed are: waiting
    at `router`, which reviewed inside its own step, after a classifier that left `unknown`."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    from coe_router import checkpoint_serializer
    from coe_router.graphs.state import RouterState
    from coe_router.schema import TaskDecision

    def classified(state):
        turn = HumanMessage("zzz qqq", id="turn-1")
        return {"query": "zzz qqq", "messages": [turn], "routed_message_id": "turn-1", "retrieved": [],
                "task_decision": TaskDecision(task="unknown", confidence=0.0, source="knn")}

    old = StateGraph(RouterState)
    old.add_node("classifier", classified)
    old.add_node("router", lambda state: {"answer": str(interrupt({"reason": "old"}))})
    old.add_edge(START, "classifier")
    old.add_edge("classifier", "router")
    old.add_edge("router", END)
    saver = InMemorySaver(serde=checkpoint_serializer())
    old.compile(checkpointer=saver).invoke({"query": "zzz qqq"}, {"configurable": {"thread_id": thread_id}})
    return saver


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_thread_paused_inside_the_old_router_step_resumes_with_the_answer(tmp_path, store, mode):
    """The chat model (as the CLI and the service) hands an old router pause to the review node, so the router
    step does not run again and the person's answer is used."""
    import asyncio

    from coe_router import CoERouterChatModel

    saver = _paused_by_the_old_router("t-old")
    graph = build_graph(review_config(tmp_path, "memory"), models=models(), store=store, checkpointer=saver)
    thread = {"configurable": {"thread_id": "t-old"}}
    assert graph.get_state(thread).next == ("router",)
    router = CoERouterChatModel.from_graph(graph)
    answer = {"task": "code"}
    reply = (router.resume("t-old", answer) if mode == "sync"
             else asyncio.run(router.aresume("t-old", answer)))
    assert reply.content == "answer from code-model" and reply.response_metadata["coe"]["classifier"] == "knn+review"
    assert [m.type for m in graph.get_state(thread).values["messages"]] == ["human", "ai"]  # no second turn


def test_review_can_pick_an_expert_directly(tmp_path, store):
    graph = build_graph(review_config(tmp_path, "memory"), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-2"}}
    graph.invoke({"query": "zzz qqq"}, thread)
    result = graph.invoke(Command(resume={"expert": "mathematician"}), thread)
    assert result["decision"].expert == "mathematician"


def test_known_tasks_are_not_paused(tmp_path, store):
    graph = build_graph(review_config(tmp_path), models=models(), store=store)
    result = graph.invoke({"query": "write a python function"}, {"configurable": {"thread_id": "t-3"}})
    assert "__interrupt__" not in result and result["decision"].expert == "coder"


def test_a_wrong_review_answer_pauses_again_and_the_thread_stays_resumable(tmp_path, store):
    graph = build_graph(review_config(tmp_path, "memory"), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-4"}}
    graph.invoke({"query": "zzz qqq"}, thread)
    again = graph.invoke(Command(resume={"task": "cdoe"}), thread)
    request = again["__interrupt__"][0].value
    assert "review answer must be" in request["error"] and "'cdoe'" in request["error"]
    result = graph.invoke(Command(resume={"task": "code"}), thread)
    assert result["decision"].expert == "coder" and result["answer"] == "answer from code-model"


def test_a_review_answer_naming_an_unknown_expert_is_refused_not_half_used(tmp_path, store):
    graph = build_graph(review_config(tmp_path, "memory"), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-9"}}
    graph.invoke({"query": "zzz qqq"}, thread)
    again = graph.invoke(Command(resume={"task": "math", "expert": "ghost"}), thread)
    assert "no expert 'ghost'" in again["__interrupt__"][0].value["error"]
    extra = graph.invoke(Command(resume={"task": "math", "because": "x"}), thread)
    assert "only 'task' and 'expert'" in extra["__interrupt__"][0].value["error"]
    result = graph.invoke(Command(resume={"task": "code", "expert": "coder"}), thread)
    assert result["decision"].expert == "coder"


def test_sqlite_checkpoints_load_router_types_without_warnings(tmp_path, store, caplog):
    graph = build_graph(review_config(tmp_path), models=models(), store=store)
    thread = {"configurable": {"thread_id": "t-5"}}
    graph.invoke({"query": "zzz qqq"}, thread)
    with caplog.at_level("WARNING"):
        graph.invoke(Command(resume={"task": "code"}), thread)
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage()]


def test_a_router_node_pauses_for_review_on_its_parents_checkpointer(tmp_path, store):
    """`checkpointer: parent`: the router as a node of the caller's graph, which owns the checkpointer."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, MessagesState, StateGraph

    router = build_graph(review_config(tmp_path, "parent"), models=models(), store=store)
    assert router.checkpointer is None
    app = StateGraph(MessagesState)
    app.add_node("router", router)
    app.add_edge(START, "router")
    app.add_edge("router", END)
    parent = app.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "p-1"}}
    paused = parent.invoke({"messages": [HumanMessage("zzz qqq")]}, thread)
    assert paused["__interrupt__"][0].value["query"] == "zzz qqq"
    resumed = parent.invoke(Command(resume={"task": "code"}), thread)
    assert resumed["messages"][-1].content == "answer from code-model" and resumed["messages"][-1].name == "coder"


def test_a_service_refuses_the_parents_checkpointer(tmp_path):
    import asyncio

    from coe_router.persistence import open_async_checkpointer

    async def open_it():
        async with open_async_checkpointer(review_config(tmp_path, "parent")):
            pass

    with pytest.raises(ConfigError, match="persistence.checkpointer: parent is for a router inside a LangGraph app"):
        asyncio.run(open_it())
