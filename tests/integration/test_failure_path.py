"""The failure path with the DEFAULT settings, against real processes: a real `coe serve` whose experts are a
fake OpenAI-compatible upstream that fails the usual ways (hangs, SIGSTOP, one byte a second, closes or errors
mid-stream, 429 with Retry-After), each with a healthy fallback expert; and the library (`graph.stream`,
`CoERouterChatModel`) against the same upstream.

Nothing in the configs sets a timeout, a retry, a deadline or a breaker: what is tested is what a user gets.

    never spliced     a stream whose expert fails after its first tokens ends with an error naming that expert,
                      never with another expert's text after them, never with finish_reason "stop"
    never truncated   a stream that ends without a finish reason is a failure, never an answer
    time budgets      a hung or trickling expert is replaced by its fallback well within 30 s, errors within 2 s
    breakers          after repeated failures the expert is skipped ("skipped: cooling down", /healthz/experts says open)
    no starvation     requests stuck on a frozen expert do not slow a healthy request to another expert
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import struct
import time

import httpx
import openai
import pytest

from coe_router import AnswerInterruptedError, CoERouterChatModel, build_graph, load_config
from tests.service_upstream import HEALTHY_TEXT, PARTIAL_TEXT, CoeServe, UpstreamProcess
from tests.service_upstream import fault_config as config

pytestmark = pytest.mark.integration

FIRST_PARTIAL = PARTIAL_TEXT.split()[0]


@pytest.fixture(scope="module")
def frozen():
    with UpstreamProcess() as process:
        yield process


@pytest.fixture(scope="module")
def service(upstream, frozen, tmp_path_factory):
    with CoeServe(config(upstream.url, frozen.url), tmp_path_factory.mktemp("failure"), "failure",
                  args=("--token-env", "COE_TEST_NO_TOKEN")) as running:
        yield running


@pytest.fixture(scope="module")
def client(service):
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client, expert: str, text: str = "What is the capital of France?", **kwargs):
    return client.chat.completions.create(model=f"coe/{expert}", messages=[{"role": "user", "content": text}],
                                          **kwargs)


def sse(service, expert: str, text: str = "What is the capital of France?") -> tuple[httpx.Response, list[dict]]:
    """A raw streamed request: the response and its events (`[DONE]` as {"done": True})."""
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", timeout=120, json={
            "model": f"coe/{expert}", "stream": True, "messages": [{"role": "user", "content": text}]}) as response:
        events = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append({"done": True} if line == "data: [DONE]" else json.loads(line[6:]))
        return response, events


def streamed_text(events: list[dict]) -> str:
    return "".join(choice["delta"].get("content") or "" for event in events for choice in event.get("choices", []))


def finish_reasons(events: list[dict]) -> list[str]:
    return [choice["finish_reason"] for event in events for choice in event.get("choices", [])
            if choice.get("finish_reason")]


@pytest.mark.parametrize("expert", ["hang", "trickle"])
def test_a_hung_or_trickling_expert_falls_back_within_the_default_budget(client, service, expert):
    started = time.monotonic()
    reply = ask(client, expert)
    took = time.monotonic() - started
    assert reply.choices[0].message.content == HEALTHY_TEXT
    assert reply.coe["expert"] == "healthy" and reply.coe["tried"] == [expert, "healthy"]
    assert "Timeout" in reply.coe["errors"][expert]
    assert took < 20, f"fallback after {took:.1f}s"
    started = time.monotonic()
    response, events = sse(service, expert)  # before any token: the fallback is invisible in a stream too
    assert response.status_code == 200 and response.headers["x-coe-expert"] == "healthy"
    assert streamed_text(events) == HEALTHY_TEXT and finish_reasons(events) == ["stop"]
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("expert", ["errors", "dropped", "closed", "limited"])
def test_errors_and_closes_fall_back_within_two_seconds(client, expert):
    started = time.monotonic()
    reply = ask(client, expert)
    assert time.monotonic() - started < 2, "Retry-After: 50 and retries must not hold a request with a fallback"
    assert reply.choices[0].message.content == HEALTHY_TEXT and reply.coe["expert"] == "healthy"


@pytest.mark.parametrize("expert", ["partial", "cut", "sse_error"])
def test_a_failure_after_the_first_token_is_never_spliced_or_presented_as_complete(client, service, expert):
    response, events = sse(service, expert)
    text = streamed_text(events)
    assert text.startswith(FIRST_PARTIAL) and HEALTHY_TEXT not in text, text
    assert "stop" not in finish_reasons(events)
    error = next(event["error"] for event in events if "error" in event)
    assert error["code"] == "expert_interrupted" and error["expert"] == expert and expert in error["message"]
    assert response.headers["x-coe-expert"] == expert  # the expert whose tokens the caller got
    assert events[-1] == {"done": True}
    reply = ask(client, expert)  # not streamed: nothing reached the caller, so the fallback answers cleanly
    assert reply.choices[0].message.content == HEALTHY_TEXT
    assert reply.coe["tried"] == [expert, "healthy"]


def test_the_openai_client_sees_the_interruption(client):
    with pytest.raises(openai.APIError, match="partial"):
        for _ in ask(client, "partial", stream=True):
            pass


def test_request_faults_are_400s_naming_the_parameter_before_any_expert(client, upstream):
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as stop:
        ask(client, "healthy", stop=[""])
    assert stop.value.body["param"] == "stop"
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
    with pytest.raises(openai.BadRequestError) as bad:
        ask(client, "healthy", response_format=schema)
    assert bad.value.body["param"] == "response_format"
    assert len(upstream.requests) == before


def test_requests_stuck_on_a_frozen_expert_do_not_slow_another_expert(service, frozen):
    """200 requests at a SIGSTOPped upstream; meanwhile requests to a healthy expert keep their latency."""
    frozen.pause()
    try:
        with httpx.Client(base_url=service.url, timeout=120,
                          limits=httpx.Limits(max_connections=300)) as http:
            def post(expert: str) -> float:
                started = time.monotonic()
                response = http.post("/v1/chat/completions", json={
                    "model": f"coe/{expert}", "messages": [{"role": "user", "content": "OTHER question"}]})
                assert response.status_code == 200, response.text
                return time.monotonic() - started

            healthy = [post("other") for _ in range(10)]
            with concurrent.futures.ThreadPoolExecutor(210) as pool:
                stuck = [pool.submit(post, "frozen") for _ in range(200)]
                time.sleep(1.0)
                probes = [post("other") for _ in range(10)]
                answered = [future.result() for future in stuck]
            assert all(took < 30 for took in answered)  # each fell back to `healthy` after its first-token budget
            healthy_p50, probe_p50 = statistics.median(healthy), statistics.median(probes)
            assert probe_p50 < max(1.5 * healthy_p50, healthy_p50 + 0.05), (healthy_p50, probe_p50)
            # the frozen expert's breaker is open: its requests now go straight to the fallback
            health = http.get("/healthz/experts").json()
            assert health["breakers"]["m-frozen"]["state"] == "open"
            fast = [post("frozen") for _ in range(5)]
            assert statistics.median(fast) < max(2 * healthy_p50, healthy_p50 + 0.1), (healthy_p50, fast)
            reply = http.post("/v1/chat/completions", json={
                "model": "coe/frozen", "messages": [{"role": "user", "content": "q"}]}).json()
            assert reply["coe"]["errors"]["frozen"] == "skipped: cooling down"
            assert reply["coe"]["expert"] == "healthy" and reply["coe"]["tried"] == ["healthy"]
    finally:
        frozen.resume()


# -- the library -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(upstream, tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("library") / "router.yaml"
    path.write_text(yaml.safe_dump(config(upstream.url)), encoding="utf-8")
    return build_graph(load_config(path))


def test_the_chat_model_stream_raises_a_named_error_and_never_splices(library):
    router = CoERouterChatModel.from_graph(library, context={"expert": "partial"})
    received = []
    with pytest.raises(AnswerInterruptedError) as interrupted:
        for chunk in router.stream("What is the capital of France?"):
            received.append(chunk.text)
    assert interrupted.value.expert == "partial" and interrupted.value.tokens >= 1
    assert "".join(received).startswith(FIRST_PARTIAL) and HEALTHY_TEXT not in "".join(received)
    assert router.invoke("What is the capital of France?").content == HEALTHY_TEXT  # invoke falls back


async def test_the_async_chat_model_stream_raises_the_same(library):
    router = CoERouterChatModel.from_graph(library, context={"expert": "sse_error"})
    received = []
    with pytest.raises(AnswerInterruptedError):
        async for chunk in router.astream("What is the capital of France?"):
            received.append(chunk.text)
    assert HEALTHY_TEXT not in "".join(received)
    reply = await router.ainvoke("What is the capital of France?")
    assert reply.content == HEALTHY_TEXT and reply.name == "healthy"


def test_the_sync_library_falls_back_from_a_trickle_within_the_budget(library):
    started = time.monotonic()
    result = library.invoke({"query": "What is the capital of France?"}, context={"expert": "trickle"})
    assert result["answer"] == HEALTHY_TEXT and time.monotonic() - started < 20


# -- the thread store ---------------------------------------------------------------------------------------------


def test_a_postgres_outage_is_503s_with_retry_after_and_recovers_by_itself(upstream, tmp_path):
    """Postgres stopped under a running service: 503 persistence_unavailable with Retry-After (never a 500), the
    cause in the log; started again: answers again without a restart of the service."""
    import shutil
    import tempfile
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data = tempfile.mkdtemp(prefix="coe-pg-outage-")  # pgserver's user must traverse every parent folder
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        routed = {**config(upstream.url), "persistence": {"checkpointer": "postgres", "dsn_env": "COE_TEST_DSN"}}
        with CoeServe(routed, tmp_path, "pg", args=("--token-env", "COE_TEST_NO_TOKEN"),
                      env={"COE_TEST_DSN": server.get_uri()}) as service:
            def post() -> httpx.Response:
                return httpx.post(f"{service.url}/v1/chat/completions", timeout=60, json={
                    "model": "coe/healthy", "messages": [{"role": "user", "content": "What is the capital?"}]})

            assert post().status_code == 200
            server.cleanup()  # stops PostgreSQL
            down = [post() for _ in range(3)]
            assert all(r.status_code == 503 for r in down), [r.text for r in down]
            assert {r.json()["error"]["code"] for r in down} == {"persistence_unavailable"}
            assert all(int(r.headers["retry-after"]) > 0 for r in down)
            server = pgserver.get_server(data, cleanup_mode="stop")  # back, on the same socket
            deadline = time.monotonic() + 30
            while (status := post().status_code) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status == 200
            assert "thread store is unavailable" in service.log() and "cause" in service.log()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


# -- every shape: fan-out refine, planned steps, the synthesizer --------------------------------------------------


def _shape_graph(upstream, tmp_path, **overrides):
    import yaml

    def model(behaviour: str) -> dict:
        return {"provider": "openai", "model": behaviour, "base_url": upstream.url}

    data = {"models": {"m-math": model("say:x cubed over three"), "m-code": model("say:def cube(x): return x ** 3"),
                       "m-partial": model("partial:3"), "m-plan": model("plan"), "m-synth": model("say:both done")},
            "tasks": {"math": "maths", "code": "programming"},
            "experts": {"mathematician": {"model": "m-math", "style": "plain"},
                        "coder": {"model": "m-code", "style": "plain"},
                        "flaky": {"model": "m-partial", "style": "plain"}},
            "task_map": {"math": ["flaky", "mathematician"], "code": ["coder", "mathematician"]},
            "classifier": {"kind": "rules", "rules": {"math": ["integral"], "code": ["python", "function"]}},
            **overrides}
    path = tmp_path / "shapes.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return build_graph(load_config(path))


def test_a_fanout_refine_that_breaks_mid_stream_is_named_and_an_invisible_one_keeps_the_best_answer(upstream,
                                                                                                     tmp_path):
    graph = _shape_graph(upstream, tmp_path, fanout=2, task_map={"math": ["mathematician", "coder"]},
                         planner={"model": "m-plan", "synthesizer_model": "m-partial"})
    router = CoERouterChatModel.from_graph(graph)
    with pytest.raises(AnswerInterruptedError) as interrupted:
        for _ in router.stream("the integral of x squared"):
            pass
    assert interrupted.value.expert == "aggregator"
    reply = router.invoke("the integral of x squared")
    decision = reply.response_metadata["coe"]
    assert reply.content == "x cubed over three" and decision["aggregation"] == "best-ranked answer (refine failed)"
    assert "TruncatedAnswerError" in decision["errors"]["aggregator"]


def test_a_planned_step_whose_expert_breaks_mid_stream_is_named_never_spliced(upstream, tmp_path):
    graph = _shape_graph(upstream, tmp_path, mode="plan", planner={"model": "m-plan", "synthesizer_model": "m-synth"})
    router = CoERouterChatModel.from_graph(graph)
    received = []
    with pytest.raises(AnswerInterruptedError) as interrupted:
        for chunk in router.stream("the integral of x squared, then a python function"):
            received.append(chunk.text)
    assert interrupted.value.expert == "flaky" and "x cubed" not in "".join(received)
    result = graph.invoke({"query": "the integral of x squared, then a python function"})  # not streamed
    assert result["answer"] == "both done"


# -- hostile bodies -------------------------------------------------------------------------------------------------


def test_a_huge_body_is_a_413_before_any_work(service, upstream):
    import socket

    before = len(upstream.requests)
    huge = {"model": "coe/healthy", "messages": [{"role": "system", "content": "x" * 10_000_000},
                                                 {"role": "user", "content": "hi"}]}
    started = time.monotonic()
    response = httpx.post(f"{service.url}/v1/chat/completions", json=huge, timeout=60)
    assert response.status_code == 413 and time.monotonic() - started < 5
    assert response.json()["error"]["code"] == "request_too_large"
    assert "--max-body-bytes" in response.json()["error"]["message"]
    with socket.create_connection(("127.0.0.1", service.port)) as raw:  # chunked, no Content-Length to trust
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")
        piece = b"x" * 1_000_000
        for _ in range(5):
            raw.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        raw.settimeout(10)
        assert b" 413 " in raw.recv(4096).split(b"\r\n")[0] + b" "
    assert len(upstream.requests) == before


def test_a_body_that_never_arrives_is_a_408(upstream, tmp_path):
    import socket

    with CoeServe(config(upstream.url), tmp_path, "slow-body",
                  args=("--token-env", "COE_TEST_NO_TOKEN", "--body-timeout-s", "1")) as slow:
        with socket.create_connection(("127.0.0.1", slow.port)) as raw:
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                        b"content-length: 1000\r\n\r\n{\"model\": ")  # promises 1000 bytes, sends 10
            raw.settimeout(10)
            started = time.monotonic()
            status_line = raw.recv(4096).split(b"\r\n")[0]
            assert b"408" in status_line and time.monotonic() - started < 5
        assert httpx.get(f"{slow.url}/healthz", timeout=5).status_code == 200
        logged = len(slow.log())
        for _ in range(3):  # clients that reset before their body arrives: nobody to answer, nothing gone wrong
            raw = socket.create_connection(("127.0.0.1", slow.port))
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                        b"content-length: 1000\r\n\r\n{\"model\": ")
            time.sleep(0.2)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            raw.close()
        assert httpx.get(f"{slow.url}/healthz", timeout=5).status_code == 200
        time.sleep(0.5)
        assert "internal_error" not in slow.log()[logged:]


# -- a crash during a resumed review ------------------------------------------------------------------------------


def test_a_thread_left_mid_run_by_a_crash_is_continued_after_the_restart(upstream, tmp_path):
    """kill -9 while a resumed review is at its (slow) expert; the restarted service continues the thread through
    the resume endpoint instead of answering 409 "not waiting for review" forever."""
    import contextlib
    import re
    import threading

    routed = config(upstream.url)
    routed["models"]["m-slow"] = {"provider": "openai", "model": "slow:4", "base_url": upstream.url}
    routed["experts"]["slow"] = {"model": "m-slow", "style": "plain"}
    routed["task_map"] = {**routed["task_map"], "general": ["healthy", "slow"]}
    routed["classifier"] = {"kind": "rules", "rules": {"general": ["capital"], "other": ["^OTHER"]}}
    routed["persistence"] = {"checkpointer": "sqlite", "path": str(tmp_path / "threads.sqlite"),
                             "review_unknown": True}
    args = ("--token-env", "COE_TEST_NO_TOKEN")
    first = CoeServe(routed, tmp_path, "crash-1", args=args).start().wait()
    try:
        paused = httpx.post(f"{first.url}/v1/chat/completions", timeout=30, json={
            "model": "coe", "messages": [{"role": "user", "content": "zzz qqq unplaceable"}]})
        assert paused.status_code == 409
        thread = re.search(r"thread (\w+)", paused.json()["error"]["message"]).group(1)
        def resume_then_die() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server is killed under this request
                httpx.post(f"{first.url}/v1/threads/{thread}/resume", json={"expert": "slow"}, timeout=30)

        resumed = threading.Thread(target=resume_then_die, daemon=True)
        resumed.start()
        deadline = time.monotonic() + 10
        while not upstream.of("slow:4") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.of("slow:4"), "the resumed run never reached its expert"
        first.process.kill()  # SIGKILL mid-answer
        first.process.wait(timeout=10)
    finally:
        first.stop()
    with CoeServe(routed, tmp_path, "crash-2", args=args) as second:
        # {} is no review answer (a paused thread would say 400): this continues the run the crash cut
        answer = httpx.post(f"{second.url}/v1/threads/{thread}/resume", json={}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["coe"]["expert"] == "slow"
        again = httpx.post(f"{second.url}/v1/threads/{thread}/resume", json={}, timeout=30)
        assert again.status_code == 409  # finished now: nothing left to continue
