"""Chat-native use on the real embedded default and on a real OpenAI-compatible expert (llama.cpp's server)."""

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from pydantic import BaseModel, Field

from coe_router import CoERouterChatModel, NeedsReviewError, ToolsUnsupportedError, build_graph, load_config
from coe_router.graphs.context import InvalidContextError
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
                                             "max_tokens": 64, "timeout_s": 60, "structured_output": "json_object"}}
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


# --- the chat model as LangChain developers use it: events, structured output, configurable, review, plans -----

class Planet(BaseModel):
    name: str = Field(description="the planet's name")
    moons: int = Field(description="how many moons it has")


PLANET_QUESTION = "Which is the largest planet of the solar system, and how many moons does it have?"


@pytest.fixture(scope="module", params=["embedded", "endpoint"])
def any_router(request, router, endpoint_config):
    """The embedded default's local experts, and one expert behind a real OpenAI-compatible server."""
    return router if request.param == "embedded" else CoERouterChatModel.from_config(endpoint_config)


async def test_a_chain_under_astream_events_streams_each_answer_token_once(any_router):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | any_router | StrOutputParser()
    tokens, model_runs, node_parents, output = [], set(), {}, None
    async for event in chain.astream_events({"q": "Name the largest planet of the solar system."}, version="v2"):
        if event["event"] == "on_chat_model_stream":
            tokens.append((event["name"], event["data"]["chunk"].content))
        elif event["event"] == "on_chat_model_start":
            model_runs.add((event["name"], event["run_id"]))
        elif event["event"] == "on_chain_start" and event["name"] in ("classifier", "expert"):
            node_parents[event["name"]] = event["parent_ids"]
        elif event["event"] == "on_chain_end" and event["name"] == "RunnableSequence":
            output = event["data"]["output"]
    # one chat model run (the router's); the expert inside streams to it, not a second time to the caller
    assert [name for name, _ in model_runs] == ["CoERouterChatModel"]
    assert {name for name, _ in tokens} == {"CoERouterChatModel"}
    assert "".join(text for _, text in tokens) == output and output.strip()
    # the inner graph's nodes are still there, as children of the router's run
    router_run = next(run_id for _, run_id in model_runs)
    assert router_run in node_parents["classifier"] and router_run in node_parents["expert"]


def test_structured_output_and_an_agent_response_format_on_every_expert(any_router):
    from langchain.agents import create_agent

    planet = any_router.with_structured_output(Planet).invoke(PLANET_QUESTION)
    assert isinstance(planet, Planet) and planet.name.strip()
    raw = any_router.with_structured_output(Planet, include_raw=True).invoke(PLANET_QUESTION)
    assert isinstance(raw["parsed"], Planet) and raw["raw"].name and raw["parsing_error"] is None
    agent = create_agent(any_router, tools=[], response_format=Planet)
    result = agent.invoke({"messages": [("user", PLANET_QUESTION)]})
    assert isinstance(result["structured_response"], Planet)


def test_function_calling_structured_output_names_the_tool_on_an_endpoint(endpoint_config):
    router = CoERouterChatModel.from_config(endpoint_config)
    planet = router.with_structured_output(Planet, method="function_calling").invoke(PLANET_QUESTION)
    assert isinstance(planet, Planet)


def test_configurable_is_the_run_context_and_a_misspelt_key_is_refused(router):
    pinned = router.with_config(configurable={"expert": "smollm2"}).invoke("What is the derivative of x^3?")
    assert pinned.name == "smollm2" and pinned.response_metadata["coe"]["overrides"] == {"expert": "smollm2"}
    other = router.invoke("What is the derivative of x^3?", {"configurable": {"expert": "gemma3", "user_id": "u1"}})
    assert other.name == "gemma3"
    with pytest.raises(InvalidContextError, match=r"context=.*'expret' \(did you mean 'expert'\?\)"):
        router.invoke("What is 2 + 2?", {"configurable": {"expret": "smollm2"}})


def test_a_review_from_the_chat_model_is_resumed_with_its_thread(local_config_path):
    config = load_config(local_config_path)
    config = config.replace(persistence={"checkpointer": "memory", "review_unknown": True}, classifier={"kind": "knn"})
    router = CoERouterChatModel.from_config(config, context={"threshold": 1.0})  # nothing is sure enough: review
    with pytest.raises(NeedsReviewError) as paused:
        router.invoke("Tell me something about the number seven.")
    review = paused.value
    assert review.thread_id and "math" in review.request["tasks"] and "gemma3" in review.request["experts"]
    assert review.thread_id in str(review) and "router.resume" in str(review)
    with pytest.raises(NeedsReviewError) as again:
        router.resume(review, {"task": "astrology"})       # a wrong answer asks again, saying why
    assert "no task 'astrology'" in again.value.request["error"]
    reply = router.resume(review, {"task": "math"})
    assert reply.name in EXPERTS and reply.response_metadata["coe"]["task"] == "math" and reply.content.strip()


def test_a_plan_streams_only_the_synthesizers_answer_and_credits_it(local_config_path):
    router = CoERouterChatModel.from_graph(build_graph(load_config(local_config_path).replace(mode="plan")))
    steps_seen = []

    class StepTokens(CollectingTracer):
        def on_llm_new_token(self, token, *, run_id, **kwargs):
            steps_seen.append(token)

    chunks = list(router.stream("Compute 17 * 23, then write one sentence about the history of multiplication.",
                                {"callbacks": [StepTokens()]}))
    tokens = "".join(chunk.content for chunk in chunks)
    last = next(chunk for chunk in chunks if chunk.name)  # the router's metadata chunk (LangChain adds an empty last)
    steps = last.response_metadata["coe"]
    assert last.name == "synthesizer" and last.response_metadata["model_name"] == "synthesizer"
    assert last.usage_metadata["output_tokens"] > 0
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    # LangChain drops `name` when it adds chunks; the summed message keeps the writer in model_name
    assert whole.response_metadata["model_name"] == "synthesizer" and whole.content == tokens and tokens.strip()
    assert steps["expert"] in EXPERTS
    assert len("".join(steps_seen)) > len(tokens)  # the steps' experts streamed too, but not to the caller


def test_token_counts_use_the_experts_tokenizer(router):
    assert router.get_num_tokens("What is the derivative of x cubed?") > 5
