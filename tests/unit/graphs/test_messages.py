"""Messages-native graphs (fakes for the models): conversations in, an AIMessage named after the expert out,
the whole conversation to the expert, follow-ups classified with their context, a MessagesState parent."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from coe_router import build_graph
from coe_router.inputs import InvalidQueryError
from tests.fakes import ScriptedChat


def remembers(default: str):
    """A reply that knows the user's name only if the conversation it was sent told it."""
    return lambda prompt: "Your name is Ada." if "My name is Ada" in prompt else default


def models():
    return {
        "math-model": ScriptedChat(reply=remembers("x = 2"), seen=[]),
        "code-model": ScriptedChat(reply=remembers("use reversed()"), seen=[]),
        "general-model": ScriptedChat(reply=remembers("hello"), seen=[]),
    }


def test_messages_in_an_ai_message_named_after_the_expert_out(config, store):
    experts = models()
    graph = build_graph(config, models=experts, store=store)
    result = graph.invoke({"messages": [SystemMessage("Answer in one line."),
                                        HumanMessage("solve the equation for x: 2x + 3 = 7")]})
    reply = result["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.name == "mathematician" and reply.content == "x = 2"
    assert reply.response_metadata["model_name"] == "mathematician"
    assert reply.response_metadata["coe"]["task"] == "math" and reply.response_metadata["coe"]["expert"] == "mathematician"
    assert reply.usage_metadata["output_tokens"] == 3 and reply.usage_metadata["input_tokens"] > 0
    assert result["answer"] == "x = 2" and len(result["messages"]) == 3
    assert experts["math-model"].seen[0].startswith("Answer in one line.")  # the client's system prompt reached it


def test_query_input_keeps_working_and_joins_the_conversation(config, store):
    result = build_graph(config, models=models(), store=store).invoke({"query": "solve the equation 4x = 8"})
    assert result["answer"] == "x = 2"
    assert [type(m).__name__ for m in result["messages"]] == ["HumanMessage", "AIMessage"]
    assert result["messages"][0].content == "solve the equation 4x = 8"


def test_a_second_turn_on_a_thread_sees_the_first(config, store):
    experts = models()
    graph = build_graph(config, models=experts, store=store, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t1"}}
    graph.invoke({"messages": [HumanMessage("My name is Ada. When did the roman empire fall?")]}, thread)
    second = graph.invoke({"messages": [HumanMessage("What is my name?")]}, thread)
    assert second["answer"] == "Your name is Ada."
    asked = experts[{"mathematician": "math-model", "coder": "code-model", "generalist": "general-model"}[
        second["decision"].expert]].seen[-1]
    assert asked.index("My name is Ada") < asked.index("What is my name?")
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]
    third = graph.invoke({"query": "solve the equation 2x + 3 = 7"}, thread)   # a query on the same thread
    assert third["decision"].task == "math" and len(third["messages"]) == 6


def test_a_follow_up_is_classified_with_the_turn_before_it(config, store):
    graph = build_graph(config, models=models(), store=store, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t2"}}
    first = graph.invoke({"messages": [HumanMessage("write a python function that reverses a list")]}, thread)
    assert first["decision"].task == "code"
    follow = graph.invoke({"messages": [HumanMessage("and now the other way round?")]}, thread)
    assert follow["decision"].task == "code" and follow["decision"].classifier.endswith("+conversation")
    alone = build_graph(config, models=models(), store=store).invoke({"query": "and now the other way round?"})
    assert alone["decision"].task != "code"


def test_a_follow_up_query_on_a_thread_is_classified_with_the_turn_before_it(config, store):
    """A `query` input joins the thread's conversation inside the router step: its classifier part must see the
    conversation the intake part extended, as the graph's reducer would leave it."""
    graph = build_graph(config, models=models(), store=store, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t4"}}
    assert graph.invoke({"query": "write a python function that reverses a list"}, thread)["decision"].task == "code"
    follow = graph.invoke({"query": "and now the other way round?"}, thread)
    assert follow["decision"].task == "code" and follow["decision"].classifier.endswith("+conversation")
    assert [m.type for m in follow["messages"]] == ["human", "ai", "human", "ai"]


def test_the_router_is_a_node_of_a_messages_state_parent(config, store):
    router = build_graph(config, models=models(), store=store)
    app = StateGraph(MessagesState)
    app.add_node("router", router)
    app.add_node("polish", lambda state: {"messages": [AIMessage(state["messages"][-1].content.upper())]})
    app.add_edge(START, "router")
    app.add_edge("router", "polish")
    app.add_edge("polish", END)
    out = app.compile().invoke({"messages": [HumanMessage("fix the bug in this python loop")]})
    assert [m.type for m in out["messages"]] == ["human", "ai", "ai"]
    assert out["messages"][1].name == "coder" and out["messages"][-1].content == "USE REVERSED()"


def test_a_conversation_without_text_is_refused(config, store):
    graph = build_graph(config, models=models(), store=store)
    with pytest.raises(InvalidQueryError):
        graph.invoke({"messages": [HumanMessage("   ")]})
    with pytest.raises(InvalidQueryError):
        graph.invoke({"messages": []})


def test_studio_can_read_the_schemas(config, store):
    graph = build_graph(config, models=models(), store=store)
    inputs = graph.get_input_jsonschema()
    assert {"messages", "query", "options", "tools"} <= set(inputs["properties"])
    assert {"messages", "answer", "decision"} <= set(graph.get_output_jsonschema()["properties"])
    assert {"expert", "task", "threshold", "fanout", "cost_weight"} <= set(graph.get_context_jsonschema()["properties"])


def test_state_edited_as_plain_dicts_is_read_as_typed_values(config, store):
    """Studio's state editor sends JSON: a decision edited as a dict must not break the next node."""
    graph = build_graph(config, models=models(), store=store, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t3"}}
    graph.invoke({"query": "solve the equation for x: 2x + 3 = 7"}, thread)
    history = list(graph.get_state_history(thread))
    before_expert = next(s for s in history if s.next == ("expert",))
    decision = before_expert.values["decision"].model_dump(mode="json")
    route = {"expert": "coder", "fallbacks": ["generalist"], "reason": "edited in Studio"}
    edited = graph.update_state(before_expert.config, {"decision": {**decision, "expert": "coder"}, "route": route},
                                as_node="router")
    result = graph.invoke(None, edited)
    assert result["decision"].expert == "coder" and result["answer"] == "use reversed()"


def test_a_strict_checkpointer_that_returns_plain_dicts_still_resumes(config, store):
    """A server that deserializes strictly hands typed values back as dicts; nodes read them as typed values."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    strict = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=None))
    graph = build_graph(config, models=models(), store=store, checkpointer=strict)
    thread = {"configurable": {"thread_id": "strict"}}
    graph.invoke({"query": "solve the equation for x: 2x + 3 = 7"}, thread)
    before_expert = next(s for s in graph.get_state_history(thread) if s.next == ("expert",))
    assert isinstance(before_expert.values["route"], dict)          # what a strict checkpointer gives back
    result = graph.invoke(None, before_expert.config)
    assert result["decision"].expert == "mathematician" and result["answer"] == "x = 2"
