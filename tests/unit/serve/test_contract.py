"""Fast, in-process checks of the service contract (the real-process suite is tests/integration/
test_service_contract.py): wire-safe JSON, streams that fail before their first output are plain HTTP errors,
deadlines, fan-outs that refuse what they cannot forward, usage over every model call, cancellation."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from coe_router import build_graph, load_config
from coe_router.serve.app import create_app
from coe_router.serve.protocol import unencodable
from coe_router.serve.streaming import RequestCancelled, RequestWatch
from tests.fakes import FailingChat, ScriptedChat
from tests.unit.conftest import write_config


def scripted(text: str, delay: float = 0.0) -> ScriptedChat:
    def reply(prompt: str) -> str:
        time.sleep(delay)
        return text

    return ScriptedChat(reply=reply, seen=[])


def models(**overrides):
    return {"math-model": scripted("The answer is 5."), "code-model": scripted("def f(): pass"),
            "general-model": scripted("general answer"), **overrides}


@pytest.fixture
def serve(tmp_path, store, run_app):
    def start(model_objects=None, deadline_s=30.0, idle_s=30.0, **config_overrides):
        config = load_config(write_config(tmp_path, **config_overrides))
        graph = build_graph(config, models=model_objects or models(), store=store)
        url = run_app(create_app(graph, token_env=None, deadline_s=deadline_s, stream_idle_s=idle_s))
        return httpx.Client(base_url=url, timeout=30)

    return start


def ask(client, content="solve the equation 2x = 10", model="coe", **extra):
    return client.post("/v1/chat/completions",
                       json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def events(response) -> list:
    return [line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
            for line in response.text.splitlines() if line.startswith("data: ")]


def test_unencodable_names_the_path():
    assert unencodable({"messages": [{"content": "ok"}, {"content": "bad \ud800"}]}) == "messages[1].content"
    assert unencodable({"tools": [{"function": {"name": "\udfff"}}]}) == "tools[0].function.name"
    assert unencodable({"k\ud800": 1}) == "k\ud800"
    assert unencodable({"a": ["fine", 1, None, {"b": "é"}]}) is None


def test_an_expert_answering_a_lone_surrogate_is_still_valid_json(serve):
    client = serve(models(**{"math-model": scripted("odd \ud800 text")}))
    response = ask(client)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "odd \ud800 text"
    streamed = ask(client, stream=True)
    assert streamed.status_code == 200 and events(streamed)[-1] == "[DONE]"


def test_a_lone_surrogate_anywhere_in_the_request_is_a_400(serve):
    client = serve()
    for messages in ([{"role": "system", "content": "\ud800"}, {"role": "user", "content": "2x = 10"}],
                     [{"role": "user", "content": "2x = 10", "name": "\udc00"}]):
        response = client.post("/v1/chat/completions", content=json.dumps({"model": "coe", "messages": messages}),
                               headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    response = client.post("/v1/chat/completions", content=json.dumps(
        {"model": "coe", "messages": [{"role": "user", "content": "2x"}], "stop": ["\ud800"]}),
        headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stop"


def test_a_stream_that_fails_before_its_first_token_is_a_plain_http_error(serve):
    client = serve({k: FailingChat() for k in models()})
    plain, streamed = ask(client), ask(client, stream=True)
    assert plain.status_code == streamed.status_code == 502
    assert plain.json()["error"]["code"] == streamed.json()["error"]["code"] == "experts_failed"


def test_the_deadline_bounds_a_slow_expert(serve):
    client = serve(models(**{"math-model": scripted("late", delay=2.0)}), deadline_s=0.5)
    started = time.monotonic()
    response = ask(client)
    assert response.status_code == 504 and time.monotonic() - started < 1.5
    assert response.json()["error"]["code"] == "deadline_exceeded" and "0.5s" in response.json()["error"]["message"]
    streamed = ask(client, stream=True)
    assert streamed.status_code == 504


def test_fanout_takes_sampling_refuses_tools_and_pinning_does_not_fan_out(serve):
    client = serve(fanout=2)
    assert ask(client).json()["coe"]["consulted"]  # a fan-out
    for extra in ({"temperature": 0.1}, {"max_completion_tokens": 4}):   # applied to every consulted expert
        for stream in (False, True):
            assert ask(client, stream=stream, **extra).status_code == 200
    for stream in (False, True):
        response = ask(client, stream=stream, tools=[{"type": "function", "function": {"name": "f"}}])
        assert response.status_code == 400 and response.json()["error"]["param"] == "tools", response.text
    pinned = ask(client, model="coe/mathematician", temperature=0.1)
    assert pinned.status_code == 200 and not pinned.json()["coe"]["consulted"]


def test_usage_sums_every_model_call_of_a_fanout(serve):
    client = serve(fanout=2)
    body = ask(client).json()
    consulted = body["coe"]["consulted"]
    assert len(consulted) == 2 and body["usage"]["completion_tokens"] >= 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_unknown_paths_and_methods_are_json_errors(serve):
    client = serve()
    missing, wrong = client.get("/v2/nothing"), client.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def _result(usage: dict | None) -> LLMResult:
    message = AIMessage(content="x", usage_metadata=usage) if usage else AIMessage(content="x")
    return LLMResult(generations=[[ChatGeneration(message=message)]])


def test_request_watch_sums_reported_usage_and_estimates_unreported_streams():
    watch = RequestWatch()
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    watch.on_chat_model_start({}, [[AIMessage(content="a" * 30)]], run_id=first)
    watch.on_llm_end(_result({"input_tokens": 10, "output_tokens": 4, "total_tokens": 14}), run_id=first)
    assert watch.usage() == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    watch.on_chat_model_start({}, [[AIMessage(content="b" * 30)]], run_id=second)
    for _ in range(5):
        watch.on_llm_new_token("t", run_id=second)
    watch.on_llm_end(_result(None), run_id=second)
    assert watch.usage() == {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33, "estimated": True}
    watch.on_chat_model_start({}, [[AIMessage(content="c")]], run_id=third)
    watch.on_llm_error(RuntimeError("down"), run_id=third)  # a failed attempt costs nothing
    assert watch.usage()["total_tokens"] == 33


def test_a_cancelled_request_stops_at_its_next_callback():
    watch = RequestWatch()
    watch.on_llm_new_token("fine", run_id=uuid.uuid4())
    watch.cancel()
    for call in (lambda: watch.on_llm_new_token("t", run_id=uuid.uuid4()),
                 lambda: watch.on_chain_start({}, {}),
                 lambda: watch.on_chat_model_start({}, [[]], run_id=uuid.uuid4())):
        with pytest.raises(RequestCancelled):
            call()


class SlowFailingChat(FailingChat):
    delay: float = 1.0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        time.sleep(self.delay)
        return super()._generate(messages, stop, run_manager, **kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_the_rest_of_its_run(serve, stream):
    fallback = scripted("fallback answer")
    client = serve(models(**{"math-model": SlowFailingChat(delay=1.0), "general-model": fallback}))
    with pytest.raises(httpx.ReadTimeout):  # gone before the first token (a stream's headers wait for it)
        client.post("/v1/chat/completions", json={"model": "coe", "messages": [{"role": "user", "content": "2x = 10"}],
                                                  "stream": stream}, timeout=0.3)
    time.sleep(1.5)  # the routed expert fails after the client left: its fallback is never asked
    assert fallback.seen == []
    assert ask(client).json()["choices"][0]["message"]["content"] == "fallback answer"  # the service still serves
    assert len(fallback.seen) == 1


def test_feedback_on_a_served_answer_changes_the_next_route_and_a_wrong_id_is_refused(serve):
    client = serve()
    first = ask(client, "solve the equation 2x = 10")
    assert first.headers["x-coe-expert"] == "mathematician"
    # the mathematician's answer to a math question is judged wrong, the generalist's right
    wrong = first.json()
    assert client.post("/v1/feedback", json={"id": wrong["id"], "score": 0}).json()["expert"] == "mathematician"
    right = ask(client, "solve the equation 2x = 10", model="coe/generalist").json()
    assert client.post("/v1/feedback", json={"id": right["id"], "score": 1.0}).status_code == 200
    assert ask(client, "solve the equation 2x = 10").headers["x-coe-expert"] == "generalist"
    refused = client.post("/v1/feedback", json={"id": "chatcmpl-never-served", "score": 1})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "feedback_refused"
    bad = client.post("/v1/feedback", json={"id": wrong["id"], "score": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "score"
    streamed = ask(client, "solve the equation 2x = 10", stream=True)
    completion_id = events(streamed)[0]["id"]
    assert client.post("/v1/feedback", json={"id": completion_id, "score": 1}).status_code == 200
