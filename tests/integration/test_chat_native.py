"""Chat-native use on the real embedded default and on a real OpenAI-compatible expert (llama.cpp's server)."""

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from coe_router import CoERouterChatModel, ToolsUnsupportedError, build_graph, load_config
from tests.fakes import CollectingTracer
from tests.integration.openai_expert import llama_cpp_server

pytestmark = pytest.mark.integration
EXPERTS = {"gemma3", "smollm2"}


class PromptCollector(CollectingTracer):
    """Keeps the messages every chat model call was sent."""

    def __init__(self):
        super().__init__()
        self.prompts = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.prompts.append(messages[0])
        return super().on_chat_model_start(serialized, messages, **kwargs)


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture(scope="module")
def router(local_config_path):
    return CoERouterChatModel.from_config(local_config_path)


def test_a_conversation_is_answered_by_a_named_expert_with_its_usage(local_config_path):
    graph = build_graph(local_config_path)
    result = graph.invoke({"messages": [SystemMessage("You are a patient tutor."),
                                        HumanMessage("Which court case established judicial review in the United States?")]})
    reply = result["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.name in EXPERTS and reply.content.strip()
    assert reply.response_metadata["coe"]["expert"] == reply.name == result["decision"].expert
    assert reply.usage_metadata["input_tokens"] > 10 and reply.usage_metadata["output_tokens"] > 0


def test_the_second_turn_reaches_the_expert_with_the_first(local_config_path):
    graph = build_graph(local_config_path, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "ada"}}
    graph.invoke({"messages": [HumanMessage("My name is Ada. Which enzyme unwinds DNA during replication?")]}, thread)
    collector = PromptCollector()
    second = graph.invoke({"messages": [HumanMessage("What is my name?")]}, {**thread, "callbacks": [collector]})
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]
    expert_prompt = "\n".join(str(m.content) for m in collector.prompts[-1])
    assert expert_prompt.index("My name is Ada") < expert_prompt.index("What is my name?")


def test_chat_model_invoke_stream_batch_and_chain(router):
    reply = router.invoke("What is the derivative of x^3 + 2x?")
    assert reply.name in EXPERTS and reply.response_metadata["model_name"] == reply.name
    chunks = list(router.stream("Name the largest planet of the solar system and say why it is so large."))
    assert len(chunks) > 2 and "".join(c.content for c in chunks).strip()
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.response_metadata["coe"]["expert"] in EXPERTS and whole.usage_metadata["output_tokens"] > 0
    assert all(r.content.strip() for r in router.batch(["What is 2 + 2?", "Who was Julius Caesar?"]))
    chain = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{q}")]) | router | StrOutputParser()
    assert chain.invoke({"q": "What is the capital of France?"}).strip()


def test_local_experts_cannot_call_tools_and_the_error_names_each(router):
    with pytest.raises(ToolsUnsupportedError) as failed:
        router.bind_tools([multiply]).invoke("What is 6 times 7?")
    assert "expert 'gemma3'" in str(failed.value) and "expert 'smollm2'" in str(failed.value)
    assert "cannot call tools" in str(failed.value)


@pytest.fixture(scope="module")
def endpoint_config(local_config_path, tmp_path_factory):
    """The embedded default's tasks and examples, answered by one expert behind a real OpenAI-compatible server."""
    folder = tmp_path_factory.mktemp("endpoint")
    with llama_cpp_server(folder) as url:
        data = yaml.safe_load(local_config_path.read_text())
        data["models"] = {"smollm2-server": {"provider": "openai", "base_url": url, "model": "smollm2",
                                             "max_tokens": 64, "timeout_s": 60}}
        data["experts"] = {"server": {"model": "smollm2-server"}}
        data["task_map"] = {"unknown": "server"}
        data["classifier"] = {"kind": "knn"}
        data["planner"] = {}
        path = folder / "endpoint.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        yield load_config(path)


def test_tools_reach_an_openai_compatible_expert_and_the_loop_closes(endpoint_config):
    router = CoERouterChatModel.from_config(endpoint_config)
    with_tool = router.bind_tools([multiply], tool_choice="multiply")
    question = HumanMessage("What is 6 times 7? Use the multiply tool.")
    call = with_tool.invoke([question])
    assert call.name == "server" and call.tool_calls and call.tool_calls[0]["name"] == "multiply"
    args = call.tool_calls[0]["args"]
    assert isinstance(args["a"], int) and isinstance(args["b"], int)
    # llama-cpp-python's server sends no usage in streams (every expert call streams): an estimate, marked so
    assert call.usage_metadata["input_tokens"] > 0 and call.response_metadata["usage_estimated"] is True
    result = ToolMessage(str(multiply.invoke(args)), tool_call_id=call.tool_calls[0]["id"])
    # llama.cpp's server refuses an assistant turn whose content is null (langchain-openai sends "" with tool
    # calls as null); OpenAI and vLLM accept it.
    call = call.model_copy(update={"content": "I will use the multiply tool."})
    final = router.bind_tools([multiply]).invoke([question, call, result])
    assert final.name == "server" and final.content.strip() and not final.tool_calls
