"""The OpenAI contract of `coe serve`, adversarially, against real processes.

Every test talks over a socket to a real `coe serve` process (python -m coe_router.cli serve) whose experts are
either a capturing fake upstream (tests/service_upstream.py: records what reached the expert, and hangs, drips,
errors or drops the connection on demand) or llama.cpp's real OpenAI-compatible server on SmolLM2. Clients are
the official `openai` client, `langchain_openai.ChatOpenAI` and raw httpx.

Five services start side by side once per module:

    main     knn routing over the shipped examples; every expert a behaviour of the fake upstream; a bearer token;
             --deadline-s 3 --stream-idle-s 1
    shapes   rules gating with fanout: 2, a planner and a synthesizer (coe-plan): fan-out, gating and plan streams
    review   rules routing, review_unknown with an SQLite checkpointer: 409 pauses and the resume endpoint
    llama    llama.cpp's server as the only expert: real usage, streams with usage, tool calls
    local    the embedded default (local 2048-token llama.cpp models) with prices: context windows, coe-cost-<w>

Every response from the services is tallied (answered, failed clearly, 500s); the module's teardown prints the
counts, and a 500 or an error without a JSON body anywhere fails it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from coe_router.config import default_config_path
from tests.service_upstream import CoeServe, Upstream, closed_port_url, llama_server

pytestmark = pytest.mark.integration

TOKEN = "coe-test-token-7f3a91"
UPSTREAM_KEY = "sk-test-" + "Zq9Xw2" * 5
EXAMPLES = default_config_path().parent / "local-examples.jsonl"
LOCAL_TASKS = ("math", "computer science", "biology", "history", "law", "health")


# -- the tally -------------------------------------------------------------------------------------------------


class Tally:
    """Every response a service gave in this module: answered (2xx, no error event), failed clearly (a JSON error
    body, or an SSE error event), 500s, and anything else (an error without a JSON body)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] += n

    def response(self, response: httpx.Response) -> None:
        self.add("tried")
        status = response.status_code
        if status < 400:
            self.add("answered")
            return
        if status == 500:
            self.add("500s")
        response.read()
        try:
            error = response.json()["error"]
            assert isinstance(error["message"], str) and error["message"] and error["code"]
        except Exception:  # noqa: BLE001 - anything but an OpenAI-style error body
            self.add("unclear")
            return
        self.add("failed clearly")

    def stream_error(self) -> None:
        """A 200 stream that ended with an SSE error event: a clear failure, not an answer."""
        with self.lock:
            self.counts["answered"] -= 1
            self.counts["failed clearly"] += 1

    def summary(self) -> str:
        c = self.counts
        return (f"service contract: {c['tried']} requests tried, {c['answered']} answered, "
                f"{c['failed clearly']} failed clearly, {c['500s']} 500s, {c['unclear']} unclear")


TALLY = Tally()


def _hooked(async_: bool = False, **kwargs):
    if async_:
        async def hook(response):
            if response.status_code >= 400:
                await response.aread()
            TALLY.response(response)

        return httpx.AsyncClient(event_hooks={"response": [hook]}, **kwargs)
    return httpx.Client(event_hooks={"response": [TALLY.response]}, **kwargs)


def http(base: str, token: str | None = TOKEN, timeout: float = 30) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return _hooked(base_url=base, headers=headers, timeout=timeout)


def oai(service: CoeServe, token: str | None = TOKEN, timeout: float = 30) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=token or "none", max_retries=0, timeout=timeout,
                         http_client=_hooked(timeout=timeout))


def sse(response: httpx.Response) -> list:
    """The events of a streamed response (parsed JSON, and "[DONE]"); an error event is tallied."""
    events = []
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        event = data if data == "[DONE]" else json.loads(data)
        if isinstance(event, dict) and "error" in event:
            TALLY.stream_error()
        events.append(event)
    return events


def text_of(events: list) -> str:
    return "".join((e["choices"][0]["delta"].get("content") or "") for e in events
                   if isinstance(e, dict) and e.get("choices"))


def chat(client: httpx.Client, model: str = "coe/capture", content: str = "what is the integral of x squared?",
         **extra) -> httpx.Response:
    return client.post("/v1/chat/completions",
                       json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


# -- the services ----------------------------------------------------------------------------------------------


def _openai_model(model: str, url: str, **extra) -> dict:
    # breakers never open here (forced upstream failures would cool down every expert for the tests after them);
    # they are tested with the default settings in test_failure_path.py
    return {"provider": "openai", "model": model, "base_url": url, "api_key_env": "COE_TEST_UPSTREAM_KEY",
            "max_retries": 0, "timeout_s": 10, "allowed_fails": 10_000, **extra}


def main_config(up: Upstream, folder: Path) -> dict:
    models = {
        "m-answer": _openai_model("answer", up.url),
        "m-json": _openai_model("json", up.url),
        "m-hang": _openai_model("hang", up.url, timeout_s=30),
        "m-drip": _openai_model("drip:2", up.url, timeout_s=30),
        "m-drip-fast": _openai_model("drip:0.2", up.url, timeout_s=30),
        "m-500": _openai_model("status:500", up.url),
        "m-429": _openai_model("status:429", up.url),
        "m-close": _openai_model("close", up.url),
        "m-closed": _openai_model("answer", closed_port_url()),
        "m-echo": _openai_model("echo", up.url),
    }
    experts = {"capture": {"model": "m-answer", "style": "plain", "system_prompt": "You are the capture expert."},
               "jsonx": {"model": "m-json", "style": "plain"}, "hang": {"model": "m-hang"},
               "drip": {"model": "m-drip"}, "drip-fast": {"model": "m-drip-fast"}, "failing": {"model": "m-500"},
               "limited": {"model": "m-429"}, "dropper": {"model": "m-close"}, "closed": {"model": "m-closed"},
               "echo": {"model": "m-echo", "style": "plain"}}
    return {"models": models, "tasks": {t: t for t in LOCAL_TASKS}, "experts": experts,
            "task_map": {t: ["capture"] for t in LOCAL_TASKS}, "default_expert": "capture",
            "classifier": {"kind": "knn"},
            "retriever": {"collection": "contract-main", "persist_dir": str(folder / "chroma"),
                          "examples": str(EXAMPLES)}}


def shapes_config(up: Upstream) -> dict:
    models = {"m-math": _openai_model("say:the integral of x squared is x cubed over three", up.url),
              "m-code": _openai_model("say:def cube(x): return x ** 3 / 3", up.url),
              "m-plan": _openai_model("plan", up.url),
              "m-synth": _openai_model("say:synthesized final answer from both experts", up.url)}
    return {"models": models, "tasks": {"math": "maths", "code": "programming"},
            "experts": {"mathematician": {"model": "m-math", "style": "plain"},
                        "coder": {"model": "m-code", "style": "plain"}},
            "task_map": {"math": ["mathematician", "coder"], "code": ["coder", "mathematician"]},
            "fanout": 2,
            "classifier": {"kind": "rules", "rules": {"math": ["integral", "equation"], "code": ["python", "function"]}},
            "planner": {"model": "m-plan", "synthesizer_model": "m-synth", "max_steps": 3}}


def review_config(up: Upstream, folder: Path) -> dict:
    return {"models": {"m-answer": _openai_model("answer", up.url), "m-second": _openai_model("say:second", up.url)},
            "tasks": {"math": "maths", "history": "the past"},
            "experts": {"capture": {"model": "m-answer", "style": "plain"}, "second": {"model": "m-second"}},
            "task_map": {"math": "capture", "history": "second"},
            "classifier": {"kind": "rules", "rules": {"math": ["integral"], "history": ["roman"]}},
            "persistence": {"checkpointer": "sqlite", "path": str(folder / "threads.sqlite"), "review_unknown": True}}


def llama_config(url: str) -> dict:
    return {"models": {"smol": {"provider": "openai", "model": "smollm2", "base_url": url, "max_retries": 0,
                                "timeout_s": 120, "max_tokens": 48}},
            "tasks": {"general": "anything"}, "experts": {"llama": {"model": "smol", "style": "plain"}},
            "task_map": {"general": "llama"}, "classifier": {"kind": "rules", "rules": {"general": ["."]}}}


def local_config(path: Path, folder: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["models"]["smollm2-135m"]["price_per_1m_tokens"] = 0.1
    data["models"]["gemma3-270m"]["price_per_1m_tokens"] = 0.4
    data["retriever"]["persist_dir"] = str(folder / "chroma-local")
    return data


class Fleet:
    """The module's services by name, and llama.cpp's own URL (for calling the expert directly)."""

    def __init__(self, llama_url: str, services: dict[str, CoeServe]):
        self.llama_url, self.services = llama_url, services

    def __getattr__(self, name: str) -> CoeServe:
        try:
            return self.__dict__["services"][name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture(scope="module")
def fleet(upstream, local_config_path, tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("contract")
    env = {"COE_TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    no_token = ("--token-env", "COE_TEST_NO_SUCH_TOKEN")
    services = {
        "main": CoeServe(main_config(upstream, folder), folder, "main",
                         args=("--token-env", "COE_TEST_SERVICE_TOKEN", "--deadline-s", "3", "--stream-idle-s", "1"),
                         env={**env, "COE_TEST_SERVICE_TOKEN": TOKEN}),
        "shapes": CoeServe(shapes_config(upstream), folder, "shapes", args=no_token, env=env),
        "review": CoeServe(review_config(upstream, folder), folder, "review", args=no_token, env=env),
        "local": CoeServe(local_config(local_config_path, folder), folder, "local", args=no_token, env=env),
    }
    for service in services.values():
        service.start()
    try:
        with llama_server(folder) as llama_url:
            services["llama"] = CoeServe(llama_config(llama_url), folder, "llama", args=no_token).start()
            for service in services.values():
                service.wait()
            yield Fleet(llama_url, services)
    finally:
        for service in services.values():
            service.stop()
        (folder / "tally.json").write_text(json.dumps(dict(TALLY.counts)))
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print("\n" + TALLY.summary(), flush=True)


@pytest.fixture
def up(upstream):
    upstream.force = None
    upstream.clear()
    yield upstream
    upstream.force = None


# -- 1. the conversation, parameters and tools reach the expert -------------------------------------------------


def test_whole_conversation_reaches_the_expert(fleet, up):
    messages = [{"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "what is two plus two?"},
                {"role": "assistant", "content": "four"},
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "name": "alice",
                 "content": [{"type": "text", "text": "Translate this:"}, {"type": "text", "text": "Bonjour"}]}]
    reply = oai(fleet.main).chat.completions.create(model="coe/capture", messages=messages)
    assert reply.choices[0].message.content == "upstream answer"
    sent = up.last("answer").body["messages"]
    assert sent == [{"role": "system", "content": "You are the capture expert.\n\nAnswer in French.\n\nBe brief."},
                    {"role": "user", "content": "what is two plus two?"},
                    {"role": "assistant", "content": "four"},
                    {"role": "user", "content": "Translate this:\nBonjour", "name": "alice"}]


def test_tool_results_in_the_history_reach_the_expert(fleet, up):
    messages = [{"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}]
    with http(fleet.main.url) as client:
        response = client.post("/v1/chat/completions", json={"model": "coe/capture", "messages": messages})
    assert response.status_code == 200, response.text
    sent = up.last("answer").body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "weather"
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}


def test_sampling_parameters_are_forwarded(fleet, up):
    oai(fleet.main).chat.completions.create(
        model="coe/capture", messages=[{"role": "user", "content": "integral of x"}], temperature=0.7, top_p=0.9,
        max_tokens=33, stop=["END", "STOP"], seed=42, frequency_penalty=0.5, presence_penalty=-0.25,
        response_format={"type": "json_object"}, user="alice", metadata={"k": "v"})
    body = up.last("answer").body
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["max_tokens"] == 33
    assert body["stop"] == ["END", "STOP"] and body["seed"] == 42
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == -0.25
    assert body["response_format"] == {"type": "json_object"}


def test_max_completion_tokens_and_a_single_stop_string(fleet, up):
    with http(fleet.main.url) as client:
        assert chat(client, max_completion_tokens=12, stop="\n\n").status_code == 200
    body = up.last("answer").body
    assert body["max_tokens"] == 12 and body["stop"] == ["\n\n"]


def test_tools_and_a_named_tool_choice_are_forwarded(fleet, up):
    tools = [{"type": "function", "function": {"name": "weather", "description": "weather of a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}]
    choice = {"type": "function", "function": {"name": "weather"}}
    reply = oai(fleet.main).chat.completions.create(
        model="coe/capture", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools, tool_choice=choice)
    body = up.last("answer").body
    assert body["tools"][0]["function"]["name"] == "weather" and body["tool_choice"] == choice
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.choices[0].message.content is None  # a call with no text, as OpenAI sends it


def test_tool_call_streams(fleet, up):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]
    stream = oai(fleet.main).chat.completions.create(
        model="coe/capture", messages=[{"role": "user", "content": "weather?"}], tools=tools, tool_choice="required",
        stream=True)
    chunks = list(stream)
    calls = [c for chunk in chunks if chunk.choices for c in (chunk.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "weather"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
])
def test_unsupported_parameters_are_a_400_naming_them(fleet, up, extra, param):
    with http(fleet.main.url) as client:
        for stream in (False, True):
            response = chat(client, stream=stream, **extra)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "unsupported_parameter" and error["param"] == param and param in error["message"]
    assert not up.of(), "a refused request must not reach an expert"


def test_a_parameter_that_asks_for_nothing_is_accepted(fleet, up):
    """`logprobs: false` (some clients always send it) changes no answer; `logprobs: true` is refused above."""
    with http(fleet.main.url) as client:
        for stream in (False, True):
            assert chat(client, stream=stream, logprobs=False).status_code == 200


# -- usage, model, headers ---------------------------------------------------------------------------------------


def test_usage_model_and_headers(fleet, up):
    raw = oai(fleet.main).chat.completions.with_raw_response.create(
        model="coe/capture", messages=[{"role": "user", "content": "what is the integral of x squared?"}])
    reply = raw.parse()
    assert raw.headers["x-coe-expert"] == "capture" and raw.headers["x-coe-task"] in LOCAL_TASKS
    assert "x-coe-fallbacks" in raw.headers
    assert reply.model == "answer"  # the answering expert's upstream model
    sent = up.last("answer").body["messages"]
    prompt = sum(len(str(m["content"]).split()) + 3 for m in sent)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, 2)
    assert reply.usage.total_tokens == prompt + 2


def test_stream_with_include_usage(fleet, up):
    stream = oai(fleet.main).chat.completions.create(
        model="coe/capture", messages=[{"role": "user", "content": "integral of x?"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "upstream answer"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2 and chunks[-1].usage.prompt_tokens > 0
    assert {c.model for c in chunks} == {"answer"}  # the answering expert's model, as without streaming


def test_fallback_is_named_in_headers_and_the_decision(fleet, up):
    with http(fleet.main.url) as client:
        for expert in ("closed", "dropper", "failing", "limited"):
            response = chat(client, f"coe/{expert}")
            assert response.status_code == 200, response.text
            assert response.headers["x-coe-expert"] == "capture"
            decision = response.json()["coe"]
            assert decision["tried"] == [expert, "capture"] and expert in decision["errors"]
            assert response.headers["x-coe-fallbacks"].split(",")[0] == "capture"


# -- the router menu -------------------------------------------------------------------------------------------


def test_models_menu(fleet):
    main = [m.id for m in oai(fleet.main).models.list()]
    assert main[0] == "coe" and {f"coe/{e}" for e in ("capture", "hang", "closed")} <= set(main)
    assert "coe-plan" not in main and not any(m.startswith("coe-cost-") for m in main)
    shapes = [m.id for m in oai(fleet.shapes, token=None).models.list()]
    assert shapes == ["coe", "coe-plan", "coe/mathematician", "coe/coder"]
    local = [m.id for m in oai(fleet.local, token=None).models.list()]
    assert {"coe", "coe-plan", "coe/smollm2", "coe/gemma3", "coe-cost-0.5"} <= set(local)
    for name in ("coe", "coe/capture"):
        assert oai(fleet.main).models.retrieve(name).id == name
    assert oai(fleet.local, token=None).models.retrieve("coe-cost-0.25").id == "coe-cost-0.25"
    with pytest.raises(openai.NotFoundError) as missing:
        oai(fleet.main).models.retrieve("coe/nobody")
    assert "coe/capture" in str(missing.value)  # names the menu


def test_pinned_expert_and_unknown_models(fleet, up):
    with http(fleet.main.url) as client:
        response = chat(client, "coe/jsonx")
        assert response.status_code == 200 and response.headers["x-coe-expert"] == "jsonx"
        assert up.last().model == "json"
        for model in ("gpt-4o", "coe/nobody", "coe-plan", "coe-cost-0.5", "coe/", ""):
            for stream in (False, True):
                response = chat(client, model, stream=stream)
                assert response.status_code == 404, (model, response.text)
                assert response.json()["error"]["code"] == "model_not_found"


def test_cost_aware_model_name(fleet):
    with http(fleet.local.url, token=None, timeout=120) as client:
        response = chat(client, "coe-cost-1", "What is the capital of France?", max_tokens=8)
    assert response.status_code == 200, response.text
    decision = response.json()["coe"]
    assert decision["overrides"] == {"cost_weight": 1.0} and decision["candidates"]


# -- LangChain ---------------------------------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


def test_langchain_chat_openai_with_history_and_structured_output(fleet, up):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    def model(name):
        return ChatOpenAI(model=name, base_url=f"{fleet.main.url}/v1", api_key=TOKEN, max_retries=0,
                          http_client=_hooked(timeout=30))

    reply = model("coe/capture").invoke([SystemMessage("Be terse."), HumanMessage("hi"), AIMessage("hello"),
                                         HumanMessage("integral of x?")])
    assert reply.content == "upstream answer" and reply.usage_metadata["output_tokens"] == 2
    assert [m["role"] for m in up.last("answer").body["messages"]] == ["system", "user", "assistant", "user"]
    person = model("coe/jsonx").with_structured_output(Person, method="json_schema").invoke("Who wrote the first program?")
    assert person == Person(name="Ada Lovelace", age=36)
    sent = up.last("json").body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"
    streamed = "".join(chunk.content for chunk in model("coe/capture").stream("integral of x?"))
    assert streamed == "upstream answer"
    # ChatOpenAI keeps no unknown body field: the decision reaches it as headers (include_response_headers=True)
    with_headers = ChatOpenAI(model="coe", base_url=f"{fleet.main.url}/v1", api_key=TOKEN, max_retries=0,
                              include_response_headers=True, http_client=_hooked(timeout=30))
    decided = with_headers.invoke("what is the integral of x?")
    assert decided.response_metadata["headers"]["x-coe-expert"] and decided.response_metadata["headers"]["x-coe-task"]


# -- every shape streams -----------------------------------------------------------------------------------------


def _stream(client: httpx.Client, model: str, content: str, **extra) -> tuple[httpx.Response, list | dict]:
    """A streamed request: its events, or the JSON error body when it failed before its first output."""
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": model, "messages": [{"role": "user", "content": content}], "stream": True,
                             **extra}) as response:
        if response.status_code == 200:
            return response, sse(response)
        response.read()
        return response, response.json()


def test_fanout_streams_the_aggregated_answer(fleet, up):
    with http(fleet.shapes.url, token=None) as client:
        response, events = _stream(client, "coe", "what is the integral of x squared?",
                                   stream_options={"include_usage": True})
        plain = chat(client, "coe", "what is the integral of x squared?").json()
    assert response.status_code == 200 and response.headers["x-coe-task"] == "math"
    assert text_of(events) == "synthesized final answer from both experts" == plain["choices"][0]["message"]["content"]
    final = [e for e in events if isinstance(e, dict) and e.get("coe")][-1]["coe"]
    assert [c["expert"] for c in final["consulted"]] == ["mathematician", "coder"] and final["aggregation"] == "refine"
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] > 0
    assert {r.model for r in up.of()} >= {"say:the integral of x squared is x cubed over three",
                                          "say:def cube(x): return x ** 3 / 3"}


def test_rules_gating_two_tasks_streams_the_aggregated_answer(fleet, up):
    with http(fleet.shapes.url, token=None) as client:
        response, events = _stream(client, "coe", "solve the equation with a python function")
    assert response.status_code == 200
    final = [e for e in events if isinstance(e, dict) and e.get("coe")][-1]["coe"]
    assert final["task"] in ("math", "code") and {c["expert"] for c in final["consulted"]} == {"mathematician", "coder"}
    assert text_of(events) == "synthesized final answer from both experts"


def test_fanout_applies_sampling_to_every_consulted_expert(fleet, up):
    with http(fleet.shapes.url, token=None) as client:
        response = chat(client, "coe", "what is the integral of x squared?", temperature=0.2)
    assert response.status_code == 200 and len(response.json()["coe"]["consulted"]) >= 2
    asked = [c.body for c in up.of() if c.body.get("messages")]
    assert len(asked) >= 2 and all(body.get("temperature") == 0.2 for body in asked)


@pytest.mark.parametrize("model, content, extra, param", [
    ("coe", "what is the integral of x squared?", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("coe-plan", "integrate x, then code it", {"seed": 3}, "seed"),
    ("coe-plan", "integrate x, then code it", {"response_format": {"type": "json_object"}}, "response_format"),
])
def test_fanout_and_plan_refuse_what_they_cannot_forward(fleet, up, model, content, extra, param):
    with http(fleet.shapes.url, token=None) as client:
        for stream in (False, True):
            response = chat(client, model, content, stream=stream, **extra)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "unsupported_parameter" and error["param"] == param
        assert not up.of(), "a refused request must not reach an expert"
        pinned = chat(client, "coe/mathematician", "what is the integral of x squared?", **extra)  # one expert takes it
        assert pinned.status_code == 200, pinned.text
    sent = up.last("say:the integral of x squared is x cubed over three").body
    assert sent["tools"][0]["function"]["name"] == "f" if param == "tools" else sent[param] == extra[param]


def test_plan_streams_steps_then_the_synthesizer(fleet, up):
    with http(fleet.shapes.url, token=None) as client:
        response, events = _stream(client, "coe-plan", "integrate x squared, then write it as python")
    assert response.status_code == 200 and response.headers["x-coe-mode"] == "plan"
    kinds = ["step" if e.get("coe_step") else "text" if text_of([e]) else "other"
             for e in events if isinstance(e, dict)]
    steps = [e["coe_step"] for e in events if isinstance(e, dict) and e.get("coe_step")]
    assert [s["text"] for s in steps] == ["compute the integral of x squared", "write a python function that returns it"]
    assert text_of(events) == "synthesized final answer from both experts"
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "step"), kinds


def test_plan_streamed_through_the_openai_client(fleet, up):
    chunks = list(oai(fleet.shapes, token=None).chat.completions.create(
        model="coe-plan", messages=[{"role": "user", "content": "integrate, then code it"}], stream=True))
    assert sum(1 for c in chunks if (c.model_extra or {}).get("coe_step")) == 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "synthesized final answer from both experts"
    # one rule for `model`, streamed or not: the model of whoever wrote the answer (here the synthesizer's)
    synthesizer_model = "say:synthesized final answer from both experts"
    assert {c.model for c in chunks if c.choices and c.choices[0].delta.content} == {synthesizer_model}
    whole = oai(fleet.shapes, token=None).chat.completions.create(
        model="coe-plan", messages=[{"role": "user", "content": "integrate, then code it"}])
    assert whole.model == synthesizer_model and whole.choices[0].message.content == \
        "synthesized final answer from both experts"


# -- review pauses and the resume endpoint (SQLite) --------------------------------------------------------------


def test_review_pause_is_the_same_409_streamed_or_not_and_resumes(fleet, up):
    with http(fleet.review.url, token=None) as client:
        assert chat(client, "coe", "what is the integral of x?").status_code == 200  # sqlite, no pause: answered
        plain = chat(client, "coe", "tell me about the weather")
        response, body = _stream(client, "coe", "tell me about the weather")
        assert plain.status_code == response.status_code == 409
        streamed = body
        assert plain.json()["error"]["code"] == streamed["error"]["code"] == "needs_review"
        thread = plain.json()["error"]["message"].split("(thread ")[1].split(")")[0]
        resume = f"/v1/threads/{thread}/resume"
        bad = client.post(resume, json={"task": "astrology"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_review"
        assert client.post(resume, json={"expert": "nobody"}).status_code == 400
        assert client.post(resume, content=b"[1, 2]", headers={"content-type": "application/json"}).status_code == 400
        done = client.post(resume, json={"task": "history"})
        assert done.status_code == 200, done.text
        assert done.json()["choices"][0]["message"]["content"] == "second"
        assert done.headers["x-coe-expert"] == "second" and done.json()["coe"]["classifier"].endswith("+review")
        again = client.post(resume, json={"task": "history"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_paused"
        unknown = client.post("/v1/threads/no-such-thread/resume", json={"task": "math"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "thread_not_found"
    with http(fleet.main.url) as client:  # a service without a checkpointer keeps no threads
        assert client.post("/v1/threads/x/resume", json={"task": "math"}).status_code == 404


def test_a_thread_paused_by_a_stream_resumes_by_expert(fleet, up):
    with http(fleet.review.url, token=None) as client:
        response, body = _stream(client, "coe", "what should I cook tonight")
        assert response.status_code == 409
        thread = body["error"]["message"].split("(thread ")[1].split(")")[0]
        done = client.post(f"/v1/threads/{thread}/resume", json={"expert": "capture"})
        assert done.status_code == 200 and done.headers["x-coe-expert"] == "capture"
        assert done.json()["choices"][0]["message"]["content"] == "upstream answer"
        assert up.last("answer").body["messages"][-1]["content"] == "what should I cook tonight"


# -- bad input fails only its own request ------------------------------------------------------------------------


def test_lone_surrogate_fails_only_its_own_request(fleet, up):
    bad = json.dumps({"model": "coe", "messages": [{"role": "user", "content": "integral of \ud800 x"}]})
    good = json.dumps({"model": "coe", "messages": [{"role": "user", "content": "what is the integral of x?"}]})
    with http(fleet.main.url) as client:
        def post(body):
            return client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, [bad, good, good, good, bad, good, good, good]))
    assert [r.status_code for r in responses] == [400, 200, 200, 200, 400, 200, 200, 200]
    assert responses[0].json()["error"]["param"] == "messages" and "surrogate" in responses[0].json()["error"]["message"]


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": "be \ud800 nice"}, {"role": "user", "content": "integral of x"}],
    [{"role": "user", "content": "hi \udfff"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "ok"}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}],
    [{"role": "user", "content": [{"type": "text", "text": None}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
    [{"role": "user", "content": 12}],
    [{"role": "user", "content": "a\u0000b"}],
    [{"role": "wizard", "content": "hi"}],
    [{"role": "tool", "content": "orphan result"}],
    [],
])
def test_malformed_conversations_are_a_clear_4xx(fleet, up, messages):
    body = json.dumps({"model": "coe/capture", "messages": messages})
    with http(fleet.main.url) as client:
        response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def test_oversized_query_is_a_400_that_says_so(fleet):
    query = ("Explain in detail why the integral of x squared is x cubed over three, step by step. " * 240)[:20_000]
    with http(fleet.local.url, token=None, timeout=120) as client:
        for stream in (False, True):
            response = chat(client, "coe", query, stream=stream)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "context_length_exceeded" and "too long for every expert" in error["message"]
        over = chat(client, "coe", "x " * 10_001)
        assert over.status_code == 400 and over.json()["error"]["code"] == "invalid_query"


def test_concurrent_requests_each_get_their_own_answer(fleet, up):
    """32 requests at once, streamed and not, good and bad: each answer echoes its own request, no 500."""
    def one(i: int):
        with http(fleet.main.url) as client:
            marker = f"marker-{i}-{uuid.uuid4().hex[:6]}"
            if i % 8 == 7:
                bad = chat(client, "coe/echo", f"{marker} \x00")
                return i, marker, bad.status_code, bad.text
            if i % 2:
                response, events = _stream(client, "coe/echo", f"what is the integral of {marker}?")
                return i, marker, response.status_code, text_of(events)
            response = chat(client, "coe/echo", f"what is the integral of {marker}?")
            return i, marker, response.status_code, response.json()["choices"][0]["message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(32)))
    for i, marker, status, text in results:
        if i % 8 == 7:
            assert status == 400
            continue
        assert status == 200 and marker in text
        others = [m for _, m, _, _ in results if m != marker]
        assert not any(m in text for m in others), "an answer carried another request's text"


# -- deadlines, idle streams, hung experts, disconnects ------------------------------------------------------------


def test_a_hanging_expert_falls_back_inside_the_deadline(fleet, up):
    """With fallbacks after it, an attempt takes at most half of the time left (--deadline-s 3): the hung expert
    is abandoned after 1.5 s although its timeout_s is 30, and the next expert answers, streamed or not."""
    with http(fleet.main.url) as client:
        started = time.monotonic()
        response = chat(client, "coe/hang")
        took = time.monotonic() - started
        assert response.status_code == 200 and response.json()["coe"]["tried"][0] == "hang"
        assert response.headers["x-coe-expert"] != "hang"
        assert 1.2 < took < 2.5, took
        started = time.monotonic()
        response, events = _stream(client, "coe/hang", "integral of x")  # nothing streamed yet: invisible
        assert 1.2 < time.monotonic() - started < 2.5
    assert response.status_code == 200 and response.headers["x-coe-expert"] != "hang"
    assert not any(isinstance(e, dict) and "error" in e for e in events)


def test_dripping_expert_hits_the_deadline_and_the_idle_timeout(fleet, up):
    with http(fleet.main.url) as client:  # not streamed: nothing reached the caller, so the fallback answers
        started = time.monotonic()
        response = chat(client, "coe/drip")
        assert response.status_code == 200 and response.headers["x-coe-expert"] != "drip"
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        response, events = _stream(client, "coe/drip", "integral of x")
        took = time.monotonic() - started
    assert response.status_code == 200 and took < 4, took
    assert text_of(events) == "drip "  # one token, then silence past --stream-idle-s 1
    errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    assert errors and errors[0]["code"] == "stream_idle_timeout" and "silent" in errors[0]["message"]
    assert events[-1] == "[DONE]"
    with http(fleet.main.url) as client:  # tokens faster than the idle limit: the request deadline ends it
        started = time.monotonic()
        response, events = _stream(client, "coe/drip-fast", "integral of x")
        assert 2.5 < time.monotonic() - started < 6
        assert text_of(events).startswith("drip drip") and events[-2]["error"]["code"] == "deadline_exceeded"


def test_errors_arrive_as_an_sse_error_event_through_the_openai_client(fleet, up):
    stream = oai(fleet.main).chat.completions.create(
        model="coe/drip", messages=[{"role": "user", "content": "integral"}], stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        seen.extend(stream)
    assert "silent" in str(caught.value) and any(c.choices and c.choices[0].delta.content for c in seen)
    with pytest.raises(openai.APIStatusError) as caught:  # failed before any output: a plain HTTP error
        oai(fleet.main).chat.completions.create(
            model="coe/hang", messages=[{"role": "user", "content": "integral"}], stream=True, stop=[""])
    assert caught.value.status_code == 400


def test_hung_experts_do_not_starve_the_service(fleet, up):
    with http(fleet.main.url) as slow, http(fleet.main.url) as fast, concurrent.futures.ThreadPoolExecutor(8) as pool:
        hung = [pool.submit(chat, slow, "coe/hang") for _ in range(8)]
        time.sleep(0.5)
        timings = []
        for _ in range(6):
            started = time.monotonic()
            assert chat(fast).status_code == 200
            timings.append(time.monotonic() - started)
        assert all(not h.done() for h in hung), "the healthy answers came while the hung ones hung"
        assert [h.result().status_code for h in hung] == [200] * 8  # each fell back after its share of the deadline
    assert max(timings) < 2.5, timings


def test_client_disconnect_cancels_the_generation(fleet, up):
    with http(fleet.main.url) as client, client.stream("POST", "/v1/chat/completions", json={
            "model": "coe/drip-fast", "stream": True, "messages": [{"role": "user", "content": "integral"}]}) as r:
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            seen += "drip" in line
            if seen >= 2:
                break
    deadline = time.monotonic() + 4
    while "drip:0.2" not in up.disconnects and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "drip:0.2" in up.disconnects, "the upstream generation kept running after the client left"
    with http(fleet.main.url) as client:
        assert chat(client).status_code == 200


@pytest.mark.parametrize("tool", [{"type": "function", "function": {"parameters": {"type": "object"}}},
                                  {"type": "web_search"}, {"type": "custom", "custom": {"name": "grammar"}}])
def test_tools_no_expert_can_be_given_are_a_400_and_leave_the_breakers_closed(fleet, up, tool):
    """Each failed inside LangChain (or switched it to the Responses API) on every expert of the route, and three
    of them opened every breaker, so everyone's requests got 503 for the cooldown."""
    with http(fleet.main.url) as client:
        for stream in (False, True, False, True):  # more than allowed_fails (3)
            refused = chat(client, stream=stream, tools=[tool])
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == "tools" and "tools[0]" in refused.json()["error"]["message"]
        assert up.of() == []
        answered = chat(client)
        assert answered.status_code == 200 and answered.headers["x-coe-expert"] == "capture"
        assert answered.json()["coe"]["tried"] == ["capture"]


def _requests_by_status(service: CoeServe) -> Counter:
    with http(service.url) as client:
        text = client.get("/metrics").text
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "coe_requests_total":
                counts[sample.labels["status"]] += sample.value
    return counts



def _in_flight(service: CoeServe) -> float:
    with http(service.url) as client:
        text = client.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "coe_in_flight_requests")


def test_streams_whose_client_resets_after_the_first_bytes_leave_nothing_in_flight(fleet, up):
    """Starlette leaves a stream's body suspended when its client goes away: the request was counted in flight (and
    not at all in coe_requests_total) until the body happened to be garbage-collected."""
    import socket
    import struct

    before = _requests_by_status(fleet.main)
    body = json.dumps({"model": "coe/capture", "stream": True,
                       "messages": [{"role": "user", "content": "integral of x"}]}).encode()
    for _ in range(20):
        raw = socket.create_connection(("127.0.0.1", fleet.main.port))
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                    + f"authorization: Bearer {TOKEN}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        raw.settimeout(10)
        assert raw.recv(1)  # the response has started
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        raw.close()
    time.sleep(3)  # then one look: before, the last stream of the batch was still counted in flight
    assert _in_flight(fleet.main) == 0
    assert (_requests_by_status(fleet.main) - before).total() == 20

@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_while_its_expert_works_is_a_cancelled_request_not_a_500(fleet, up, stream):
    """Gone before any output (an expert still thinking): counted as 499 `cancelled`, never as a server error."""
    before, log_before = _requests_by_status(fleet.main), len(fleet.main.log())
    with http(fleet.main.url, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        chat(client, "coe/hang", stream=stream)  # the client gives up after 0.5 s, inside the hung attempt
    deadline = time.monotonic() + 5
    while (grown := _requests_by_status(fleet.main) - before).total() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert grown == Counter({"499": 1}), grown
    assert "internal_error" not in fleet.main.log()[log_before:]


# -- secrets -----------------------------------------------------------------------------------------------------


def test_upstream_errors_never_leak_the_api_key(fleet, up):
    with http(fleet.main.url) as client:
        fallback = chat(client, "coe/failing")
        assert fallback.status_code == 200
        assert up.last("status:500").api_key == UPSTREAM_KEY  # the expert did get the key...
        assert TOKEN not in json.dumps(up.last("status:500").headers)  # ...and never the caller's token
        streamed_fallback = _stream(client, "coe/failing", "integral of x")[1]
        up.force = "status:500"
        failed = chat(client, "coe")
        response, streamed = _stream(client, "coe", "integral of x")
        up.force = "status:429"
        limited = chat(client, "coe/limited")
    assert failed.status_code == limited.status_code == response.status_code == 502
    for text in (fallback.text, failed.text, limited.text, json.dumps(streamed), json.dumps(streamed_fallback),
                 str(fallback.headers)):
        assert UPSTREAM_KEY not in text and "Zq9Xw2" not in text
    # the upstream's error body (which echoed the key) never passes through: its status and short code only
    assert fallback.json()["coe"]["errors"]["failing"] == "OpenAIAPIError: the upstream answered HTTP 500 (upstream_500)"
    assert "capture" in failed.json()["error"]["message"] and streamed["error"]["code"] == "experts_failed"


# -- auth --------------------------------------------------------------------------------------------------------


def test_bearer_token_rules(fleet):
    url = fleet.main.url
    with http(url, token=None) as client:
        for path in ("/v1/models", "/docs", "/openapi.json", "/redoc", "/v1/threads/x/resume"):
            method = client.post if path.endswith("resume") else client.get
            response = method(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
        assert client.get("/healthz").json() == {"status": "ok"}
        for header in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"):
            assert client.get("/v1/models", headers={"authorization": header}).status_code == 200, header
        for header in ("Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer",
                       f"Token {TOKEN}", "Bearer \u00e9t\u00e9"):
            response = client.get("/v1/models", headers={"authorization": header.encode("utf-8")})
            assert response.status_code == 401, header
        assert client.get("/docs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/openapi.json", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        oai(fleet.main, token="wrong").models.list()


# -- real expert: llama.cpp's server ------------------------------------------------------------------------------


def test_llama_answer_with_real_usage(fleet):
    client = oai(fleet.llama, token=None, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="coe", messages=[{"role": "system", "content": "You are terse."},
                               {"role": "user", "content": "Name a primary colour."}], max_tokens=12, temperature=0)
    reply = raw.parse()
    assert raw.headers["x-coe-expert"] == "llama" and reply.model == "smollm2"
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 12
    direct = openai.OpenAI(base_url=fleet.llama_url, api_key="none").chat.completions.create(
        model="smollm2", messages=[{"role": "system", "content": "You are terse."},
                                   {"role": "user", "content": "Name a primary colour."}], max_tokens=12, temperature=0)
    # every expert call streams (so a dead expert is known by its first token), and llama-cpp-python's server
    # sends no usage in streams: the router estimates it and says so; the same prompt reached the server
    assert (reply.usage.model_extra or {}).get("estimated") is True
    assert reply.usage.completion_tokens == direct.usage.completion_tokens
    assert abs(reply.usage.prompt_tokens - direct.usage.prompt_tokens) <= 0.5 * direct.usage.prompt_tokens


def test_llama_stream_with_usage(fleet):
    chunks = list(oai(fleet.llama, token=None, timeout=120).chat.completions.create(
        model="coe/llama", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=16,
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert text.strip() and pieces > 1 and {c.model for c in chunks} == {"smollm2"}
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # llama.cpp's server sends no usage in a stream (checked directly below), so the router counts: one token per
    # streamed piece, the prompt estimated, and says so
    assert usage.completion_tokens >= pieces and (usage.model_extra or {}).get("estimated") is True
    direct = list(openai.OpenAI(base_url=fleet.llama_url, api_key="none").chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=16,
        stream=True, stream_options={"include_usage": True}))
    assert all(getattr(c, "usage", None) is None for c in direct)


def test_llama_tool_call_with_a_named_tool_choice(fleet):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    reply = oai(fleet.llama, token=None, timeout=120).chat.completions.create(
        model="coe", messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=48)
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    assert reply.choices[0].finish_reason == "tool_calls"


# -- random requests: never a 500, always a JSON error, the connection stays usable ------------------------------

_text = st.text(max_size=40)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-3, 3, allow_nan=False), _text)
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(_text, inner, max_size=3)), max_leaves=8)
_content = st.one_of(_text, st.integers(), st.none(),
                     st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]),
                                                     "text": st.one_of(_text, st.integers())}), max_size=3))
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "bot"]), "content": _content})
_params = st.dictionaries(
    st.sampled_from(["temperature", "top_p", "max_tokens", "stop", "seed", "n", "stream", "tools", "tool_choice",
                     "response_format", "stream_options", "frequency_penalty", "presence_penalty", "user",
                     "max_completion_tokens", "logprobs", "surprise"]), _json, max_size=4)
_body = st.one_of(
    st.builds(lambda model, messages, params: {"model": model, "messages": messages, **params},
              st.sampled_from(["coe", "coe/capture", "coe/jsonx", "gpt-x", "coe/", "coe-cost-1"]),
              st.lists(_message, max_size=4), _params),
    _json)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=_body)
def test_random_requests_never_500(fleet, body):
    client = _fuzz_client(fleet)
    response = client.post("/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"], response.text
    elif body.get("stream") if isinstance(body, dict) else False:
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["role"] == "assistant"
    assert response.headers.get("connection", "").lower() != "close"
    assert client.get("/healthz").status_code == 200  # the same keep-alive connection still serves


_FUZZ: dict = {}


def _fuzz_client(fleet) -> httpx.Client:
    if "client" not in _FUZZ:
        _FUZZ["client"] = http(fleet.main.url, timeout=10)
        _FUZZ["client"].__enter__()
    return _FUZZ["client"]


def test_fuzz_client_kept_one_connection(fleet):
    client = _FUZZ.pop("client", None)
    if client is None:
        pytest.skip("the random-request test did not run")
    pool = client._transport._pool
    assert len(pool.connections) == 1, "the random requests needed more than one connection"
    client.close()


def test_tally_has_no_500s_and_no_unclear_errors(fleet):
    counts = TALLY.counts
    assert counts["tried"] > 0
    assert counts["500s"] == 0 and counts["unclear"] == 0, TALLY.summary()
