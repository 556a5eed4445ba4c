"""The OpenAI-compatible service, called with the official `openai` client over a real socket on 127.0.0.1."""


import httpx
import openai
import pytest

from coe_router import build_graph
from coe_router.serve.app import create_app
from tests.fakes import FailingChat, ScriptedChat


def models(**overrides):
    base = {
        "math-model": ScriptedChat(reply=lambda p: "The answer is 5.", seen=[]),
        "code-model": ScriptedChat(reply=lambda p: "def rev(xs): return xs[::-1]", seen=[]),
        "general-model": ScriptedChat(reply=lambda p: "general answer", seen=[]),
    }
    return {**base, **overrides}


@pytest.fixture
def serve(config, store, monkeypatch, run_app):
    def start(model_objects=None, token=None):
        if token:
            monkeypatch.setenv("COE_TEST_TOKEN", token)
        graph = build_graph(config, models=model_objects or models(), store=store)
        return run_app(create_app(graph, token_env="COE_TEST_TOKEN", max_query_chars=500))

    return start


def client(url, key="none"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_chat_completion_names_the_expert(serve):
    url = serve()
    raw = client(url).chat.completions.with_raw_response.create(
        model="coe", messages=[{"role": "user", "content": "solve the equation 2x = 10"}])
    assert raw.headers["x-coe-expert"] == "mathematician" and raw.headers["x-coe-task"] == "math"
    completion = raw.parse()
    assert completion.choices[0].message.content == "The answer is 5."
    assert completion.model_extra["coe"]["expert"] == "mathematician"
    assert completion.model_extra["coe"]["retrieved"]


def test_streaming_with_the_openai_client(serve):
    url = serve()
    with client(url).chat.completions.with_streaming_response.create(
        model="coe", stream=True, messages=[{"role": "user", "content": "write a python function to reverse a list"}]
    ) as response:
        assert response.headers["x-coe-expert"] == "coder"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "def rev(xs): return xs[::-1]"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["coe"]["expert"] == "coder"


def test_models_endpoint_lists_the_router_menu(serve):
    assert [m.id for m in client(serve()).models.list()] == ["coe", "coe/mathematician", "coe/coder", "coe/generalist"]


def test_fallback_expert_answers_when_routed_one_is_down(serve):
    url = serve(models(**{"math-model": FailingChat()}))
    raw = client(url).chat.completions.with_raw_response.create(
        model="coe", messages=[{"role": "user", "content": "what is the integral of x squared"}])
    assert raw.headers["x-coe-expert"] == "generalist"
    assert raw.parse().model_extra["coe"]["errors"]["mathematician"].startswith("ConnectionError")


def test_all_experts_down_is_a_502_naming_them(serve):
    url = serve({k: FailingChat() for k in models()})
    response = httpx.post(f"{url}/v1/chat/completions", json={"model": "coe", "messages": [{"role": "user", "content": "2x = 4"}]})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "mathematician" in message and "generalist" in message and "coder" in message


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"model": "coe", "messages": [{"role": "user", "content": "   "}]}, 400, "invalid_query"),
        ({"model": "coe", "messages": [{"role": "user", "content": "x" * 501}]}, 400, "invalid_query"),
        ({"model": "coe", "messages": [{"role": "system", "content": "hi"}]}, 400, "no_user_message"),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_body"),
        ({"model": "coe", "messages": "hello"}, 400, "invalid_body"),
    ],
)
def test_bad_requests_get_json_4xx(serve, body, status, code):
    response = httpx.post(f"{serve()}/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_invalid_utf8_and_non_json_bodies_are_400(serve):
    url = serve()
    for content in (b'{"model": "coe", "messages": [{"role": "user", "content": "\xff\xfe"}]}', b"not json"):
        response = httpx.post(f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text


def test_bearer_token_is_required_when_configured(serve):
    url = serve(token="s3cret")
    with pytest.raises(openai.AuthenticationError):
        client(url, key="wrong").models.list()
    assert client(url, key="s3cret").models.list().data[0].id == "coe"


def test_an_in_process_checkpointer_keeps_no_answered_thread(config, store, run_app):
    """`persistence.checkpointer: memory` in a long-running service: answered requests leave nothing behind (each
    would otherwise keep its thread's checkpoints for the life of the process), streamed or not."""
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    graph = build_graph(config, models=models(), store=store, checkpointer=saver)
    url = run_app(create_app(graph, token_env="COE_TEST_TOKEN", max_query_chars=500))
    for stream in (False, True, False):
        reply = client(url).chat.completions.create(
            model="coe", stream=stream, messages=[{"role": "user", "content": "solve the equation 2x = 10"}])
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices) == "The answer is 5."
        else:
            assert reply.choices[0].message.content == "The answer is 5."
    assert graph.checkpointer.storage == {} and not graph.checkpointer.writes
