"""CoERouterChatModel as a LangChain developer uses it (fake experts; the real default is in integration/)."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from coe_router import CoERouterChatModel, InvalidToolsError, ToolsUnsupportedError
from tests.fakes import ScriptedChat, ToolCallingChat

MATH = "solve the equation for x: 2x + 3 = 7"


def models(**overrides):
    base = {"math-model": ScriptedChat(reply=lambda p: "x = 2", seen=[]),
            "code-model": ScriptedChat(reply=lambda p: "use reversed()", seen=[]),
            "general-model": ScriptedChat(reply=lambda p: "hello", seen=[])}
    return {**base, **overrides}


@pytest.fixture
def router(config, store):
    return CoERouterChatModel.from_config(config, models=models(), store=store)



def test_text_parts_reach_the_expert_a_line_each_under_their_authors_name(config, store):
    expert = ToolCallingChat(seen=[])  # records the messages it is sent
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    turn = HumanMessage(name="alice", content=[{"type": "text", "text": "solve the equation for x:"},
                                              {"type": "text", "text": "2x + 3 = 7"}])
    reply = router.invoke([turn])
    assert reply.name == "mathematician"
    sent = expert.seen[-1][-1]
    assert isinstance(sent, HumanMessage) and sent.name == "alice"
    assert "solve the equation for x:\n2x + 3 = 7" in sent.text

@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_invoke_returns_the_experts_message(router):
    reply = router.invoke([SystemMessage("Be brief."), HumanMessage(MATH)])
    assert isinstance(reply, AIMessage) and reply.content == "x = 2" and reply.name == "mathematician"
    assert reply.response_metadata["model_name"] == "mathematician"
    assert reply.response_metadata["coe"]["task"] == "math" and reply.usage_metadata["total_tokens"] > 0


async def test_ainvoke_batch_and_a_string_input(router):
    assert (await router.ainvoke(MATH)).content == "x = 2"
    replies = router.batch([MATH, "write a python function that reverses a list"])
    assert [r.name for r in replies] == ["mathematician", "coder"]


def test_stream_yields_the_answer_then_the_decision(router):
    chunks = list(router.stream(MATH))
    assert "".join(c.content for c in chunks) == "x = 2"
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.response_metadata["coe"]["expert"] == "mathematician" and whole.usage_metadata["output_tokens"] == 3


async def test_astream(router):
    chunks = [chunk async for chunk in router.astream("write a python function that reverses a list")]
    assert "".join(c.content for c in chunks) == "use reversed()"


def test_in_an_lcel_chain(router):
    chain = ChatPromptTemplate.from_messages([("system", "You help with {topic}."), ("human", "{question}")]) \
        | router | StrOutputParser()
    assert chain.invoke({"topic": "algebra", "question": MATH}) == "x = 2"


def test_per_call_context_pins_an_expert(router):
    reply = router.invoke(MATH, context={"expert": "generalist"})
    assert reply.name == "generalist" and reply.response_metadata["coe"]["overrides"] == {"expert": "generalist"}
    pinned = router.bind(context={"task": "code"})
    assert pinned.invoke(MATH).name == "coder"


def test_bound_tools_reach_the_routed_expert(config, store):
    expert = ToolCallingChat(args={"a": 6, "b": 7}, seen=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    reply = router.bind_tools([multiply]).invoke(MATH)
    assert reply.name == "mathematician" and reply.tool_calls[0]["name"] == "multiply"
    assert reply.tool_calls[0]["args"] == {"a": 6, "b": 7}



def test_tool_names_are_the_upstreams_to_judge(config, store):
    """A dotted name (as MCP tools have) or a title with a space passes to the expert, named as the tool choice."""
    expert = ToolCallingChat(args={"path": "a.txt"}, seen=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    read = {"type": "function", "function": {"name": "fs.read", "parameters": {"type": "object", "properties": {}}}}
    reply = router.bind_tools([read], tool_choice="fs.read").invoke(MATH)
    assert reply.tool_calls[0]["name"] == "fs.read"
    schema = {"title": "Person Info", "type": "object", "properties": {"x": {"type": "integer"}}}
    assert router.with_structured_output(schema, method="function_calling").invoke(MATH) == {"path": "a.txt"}

class Solution(BaseModel):
    x: int


class SchemaHonouringChat(ScriptedChat):
    """Answers `{"x": 2}` when it is sent a JSON schema as `response_format`, prose otherwise."""

    formats: list = []

    def _generate(self, messages, stop=None, run_manager=None, response_format=None, **kwargs):
        self.formats.append(response_format)
        self.reply = (lambda p: '{"x": 2}') if response_format else (lambda p: "x is two")
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_structured_output_sends_the_schema_as_response_format(config, store):
    expert = SchemaHonouringChat(seen=[], formats=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    assert router.with_structured_output(Solution).invoke(MATH) == Solution(x=2)
    sent = expert.formats[-1]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Solution"
    assert sent["json_schema"]["schema"]["properties"]["x"]["type"] == "integer"
    raw = router.with_structured_output(Solution, include_raw=True).invoke(MATH)
    assert raw["parsed"] == Solution(x=2) and raw["raw"].name == "mathematician" and raw["parsing_error"] is None
    assert router.with_structured_output(Solution.model_json_schema(), method="json_mode").invoke(MATH) == {"x": 2}
    assert expert.formats[-1] == {"type": "json_object"}


def test_structured_output_by_function_calling_names_the_tool(config, store):
    expert = ToolCallingChat(args={"x": 2}, seen=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    assert router.with_structured_output(Solution, method="function_calling").invoke(MATH) == Solution(x=2)


def test_structured_output_refuses_an_unknown_method(router):
    with pytest.raises(ValueError, match="json_schema, json_mode or function_calling"):
        router.with_structured_output(Solution, method="xml")


def test_tools_on_experts_that_cannot_call_them_name_every_expert(router):
    with pytest.raises(ToolsUnsupportedError, match=r"expert 'mathematician' \(model 'math-model'\) cannot call"):
        router.bind_tools([multiply]).invoke(MATH)


def test_a_tool_no_expert_can_be_given_is_refused_before_routing(config, store):
    """A built-in tool type would make langchain-openai call the upstream's Responses API: named, no expert called,
    and no circuit breaker counts it (allowed_fails is 3, so four such requests would otherwise open it)."""
    expert = ToolCallingChat(args={"a": 6, "b": 7}, seen=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    for _ in range(4):
        with pytest.raises(InvalidToolsError, match=r"tools\[0\]: type 'web_search' is not supported"):
            router.bind_tools([{"type": "web_search"}]).invoke(MATH)
    assert expert.seen == []
    assert router.bind_tools([multiply]).invoke(MATH).name == "mathematician"


class UnconvertibleToolsChat(ToolCallingChat):
    """An expert whose integration cannot convert the tools (langchain-openai raises KeyError or ValueError)."""

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        raise ValueError("Unsupported function")


def test_tools_an_integration_cannot_convert_are_the_requests_fault_not_the_experts(config, store):
    unconvertible = {name: UnconvertibleToolsChat(seen=[]) for name in ("math-model", "code-model", "general-model")}
    router = CoERouterChatModel.from_config(config, models=models(**unconvertible), store=store)
    for _ in range(4):
        with pytest.raises(InvalidToolsError, match="cannot be given to expert 'mathematician': ValueError"):
            router.bind_tools([multiply]).invoke(MATH)
    reply = router.invoke(MATH)  # the breaker stayed closed: the routed expert answers
    assert reply.name == "mathematician" and reply.response_metadata["coe"]["tried"] == ["mathematician"]


def test_as_the_model_of_a_langchain_agent(config, store):
    from langchain.agents import create_agent

    expert = ToolCallingChat(args={"a": 6, "b": 7}, seen=[])
    router = CoERouterChatModel.from_config(config, models=models(**{"math-model": expert}), store=store)
    agent = create_agent(model=router, tools=[multiply], system_prompt="Use tools for arithmetic.")
    result = agent.invoke({"messages": [HumanMessage("solve the equation: what is 6 times 7?")]})
    assert [m.type for m in result["messages"]] == ["human", "ai", "tool", "ai"]
    assert result["messages"][2].content == "42" and result["messages"][-1].content == "The tool says 42."
    second_call = expert.seen[-1]
    assert second_call[0].type == "system" and "Use tools" in second_call[0].content
    assert [m.type for m in second_call[1:]] == ["human", "ai", "tool"]
