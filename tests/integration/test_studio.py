"""LangGraph Studio's view of the router: `langgraph dev` serving langgraph.json, driven through `langgraph_sdk`.

One server for the module, on the embedded default (COE_CONFIG points at the session's temporary copy, so the
Chroma index lives in a temporary folder). What Studio does is done here through the same API: read the graphs'
schemas, chat on a thread, browse its checkpoints, fork from an earlier one (time travel), edit the state as a
node and resume, and run with an assistant's context.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from coe_router.graphs.context import RouterContext

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
EXPERTS = {"gemma3", "smollm2"}
TASKS = {"math", "computer science", "biology", "history", "law", "health", "unknown"}
FIRST = "What is the derivative of x^3 + 2x?"
FOLLOW_UP = "What did I just ask you?"
FORK = "Which court case established judicial review in the United States?"
READY_TIMEOUT_S = 300  # graph import (models, MiniLM) plus a first index build in a fresh folder
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _free_port() -> int:
    ports = list(range(24000, 25000))
    random.shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 24000-24999")


def _log_text(path: Path) -> str:
    return ANSI.sub("", path.read_text(errors="replace")) if path.exists() else ""


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(_log_text(path).splitlines()[-lines:])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(local_config_path, tmp_path_factory):
    """`langgraph dev` on a free port of 24000-24999, offline; yields (url, log path)."""
    env = {
        **os.environ,
        "COE_CONFIG": str(local_config_path),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGGRAPH_STRICT_MSGPACK"):
        env.pop(name, None)  # no tracing; LangGraph's default checkpoint deserialization
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("langgraph-dev") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(LANGGRAPH), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            if process.poll() is not None:
                pytest.fail(f"langgraph dev exited with {process.returncode} before it was ready; log tail:\n"
                            f"{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready on {url} after {READY_TIMEOUT_S} s; log tail:\n"
                            f"{_tail(log_path)}")
            time.sleep(1)
        yield url, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    return get_sync_client(url=server[0])


@pytest.fixture(scope="module")
def new_thread(client):
    """Creates threads and deletes them at the end: `langgraph dev` keeps threads in .langgraph_api/, and a
    developer's Studio would list them."""
    created = []

    def create() -> str:
        created.append(client.threads.create()["thread_id"])
        return created[-1]

    yield create
    for thread_id in created:
        client.threads.delete(thread_id)


def _system_assistant(client, graph_id: str) -> str:
    """The assistant `langgraph dev` creates for each graph of langgraph.json (Studio lists it under the graph)."""
    found = [a for a in client.assistants.search(graph_id=graph_id, limit=100)
             if a["metadata"].get("created_by") == "system"]
    assert len(found) == 1, found
    return found[0]["assistant_id"]


def _kinds(messages: list[dict]) -> list[str]:
    return [message["type"] for message in messages]


@pytest.fixture(scope="module")
def conversation(client, new_thread):
    """Two turns on one thread, as Studio's chat view sends them: each turn only the new human message. The
    second turn is streamed (values + message tokens), the way the chat view renders an answer as it comes."""
    thread_id = new_thread()
    client.runs.wait(thread_id, "coe", input={"messages": [{"role": "user", "content": FIRST}]})
    first = client.threads.get_state(thread_id)
    streamed_nodes, last_values = set(), None
    for part in client.runs.stream(thread_id, "coe", input={"messages": [{"role": "user", "content": FOLLOW_UP}]},
                                   stream_mode=["messages-tuple", "values"]):
        if part.event == "messages":
            chunk, metadata = part.data
            if chunk.get("type") == "AIMessageChunk":
                streamed_nodes.add(metadata.get("langgraph_node"))
        elif part.event == "values":
            last_values = part.data
        elif part.event == "error":
            pytest.fail(f"streamed run failed: {part.data}")
    second = client.threads.get_state(thread_id)
    return {"thread_id": thread_id, "first": first, "second": second, "streamed_nodes": streamed_nodes,
            "last_values": last_values}


@pytest.mark.parametrize("graph_id", ["coe", "coe-plan"])
def test_schemas_studio_draws_are_chat_ready_and_carry_the_context(client, server, graph_id):
    assistant_id = _system_assistant(client, graph_id)
    schemas = client.assistants.get_schemas(assistant_id)
    assert "messages" in schemas["input_schema"]["properties"]
    assert {"messages", "decision", "answer"} <= set(schemas["output_schema"]["properties"])
    assert "messages" in schemas["state_schema"]["properties"]
    assert set(schemas["context_schema"]["properties"]) == set(RouterContext.model_fields)
    drawing = client.assistants.get_graph(assistant_id)
    first = {"coe": "router", "coe-plan": "intake"}[graph_id]
    assert {first, "__start__", "__end__"} <= {node["id"] for node in drawing["nodes"]}
    problems = [line for line in _log_text(server[1]).splitlines()
                if "schema" in line.lower() and re.search(r"(?i)\b(error|failed|exception)\b", line)]
    assert not problems, "\n".join(problems)


def test_chat_turn_appends_an_ai_message_named_after_the_expert(conversation):
    values = conversation["first"]["values"]
    messages = values["messages"]
    assert _kinds(messages) == ["human", "ai"]
    assert messages[0]["content"] == FIRST
    reply = messages[-1]
    assert reply["name"] in EXPERTS and reply["content"].strip()
    assert reply["response_metadata"]["coe"]["task"] in TASKS
    assert reply["response_metadata"]["coe"]["expert"] == reply["name"]
    assert values["decision"]["expert"] == reply["name"]


def test_follow_up_continues_the_thread_and_streams_only_the_answer(conversation):
    messages = conversation["second"]["values"]["messages"]
    assert _kinds(messages) == ["human", "ai", "human", "ai"]
    assert messages[2]["content"] == FOLLOW_UP and messages[3]["name"] in EXPERTS
    assert messages[:2] == conversation["first"]["values"]["messages"]
    # The chat view renders tokens as they come: only the answering node streams (no classifier or planner text).
    assert conversation["streamed_nodes"] == {"expert"}
    assert [m["id"] for m in conversation["last_values"]["messages"]] == [m["id"] for m in messages]


def test_time_travel_forks_from_the_first_turn(client, conversation):
    thread_id = conversation["thread_id"]
    first_id = conversation["first"]["checkpoint"]["checkpoint_id"]
    original_id = conversation["second"]["checkpoint"]["checkpoint_id"]
    history = client.threads.get_history(thread_id, limit=200)
    assert {first_id, original_id} <= {state["checkpoint"]["checkpoint_id"] for state in history}

    client.runs.wait(thread_id, "coe", input={"messages": [{"role": "user", "content": FORK}]},
                     checkpoint_id=first_id)
    fork = client.threads.get_state(thread_id)
    messages = fork["values"]["messages"]
    assert _kinds(messages) == ["human", "ai", "human", "ai"]
    assert messages[2]["content"] == FORK and messages[3]["name"] in EXPERTS
    assert messages[:2] == conversation["first"]["values"]["messages"]
    assert fork["checkpoint"]["checkpoint_id"] != original_id

    original = client.threads.get_state(thread_id, checkpoint_id=original_id)
    assert original["values"]["messages"] == conversation["second"]["values"]["messages"]
    assert original["values"]["decision"] == conversation["second"]["values"]["decision"]


def test_state_edited_as_the_router_reroutes_the_resumed_run(client, conversation):
    thread_id = conversation["thread_id"]
    history = client.threads.get_history(thread_id, limit=200)
    routed = next(state for state in history
                  if state["next"] == ["expert"] and state["metadata"].get("source") == "loop"
                  and len(state["values"]["messages"]) == 1)
    decision = {**routed["values"]["decision"], "expert": "smollm2", "fallbacks": ["gemma3"]}
    route = {"expert": "smollm2", "fallbacks": ["gemma3"], "reason": "edited"}

    update = client.threads.update_state(thread_id, {"route": route, "decision": decision}, as_node="router",
                                         checkpoint_id=routed["checkpoint"]["checkpoint_id"])
    edited = client.threads.get_state(thread_id, checkpoint_id=update["checkpoint"]["checkpoint_id"])
    assert edited["next"] == ["expert"]
    assert edited["values"]["route"]["reason"] == "edited"
    assert edited["values"]["decision"]["expert"] == "smollm2"

    client.runs.wait(thread_id, "coe", input=None, checkpoint_id=update["checkpoint"]["checkpoint_id"])
    resumed = client.threads.get_state(thread_id)["values"]
    assert _kinds(resumed["messages"]) == ["human", "ai"]
    assert resumed["messages"][-1]["name"] == "smollm2"
    assert resumed["decision"]["expert"] == "smollm2" and resumed["decision"]["tried"] == ["smollm2"]
    assert resumed["route"]["reason"] == "edited"


def test_assistant_context_pins_the_expert(client, new_thread):
    assistant = client.assistants.create("coe", context={"expert": "smollm2"}, name="coe pinned to smollm2")
    try:
        assert client.assistants.get(assistant["assistant_id"])["context"] == {"expert": "smollm2"}
        thread_id = new_thread()
        client.runs.wait(thread_id, assistant["assistant_id"],
                         input={"messages": [{"role": "user", "content": "What is 7 times 8?"}]})
        values = client.threads.get_state(thread_id)["values"]
        assert values["messages"][-1]["name"] == "smollm2"
        assert values["decision"]["expert"] == "smollm2"
        assert values["decision"]["overrides"] == {"expert": "smollm2"}
    finally:
        client.assistants.delete(assistant["assistant_id"])


def test_bad_run_context_fails_naming_the_field(client, new_thread):
    thread_id = new_thread()
    question = {"messages": [{"role": "user", "content": "What is 7 times 8?"}]}
    with pytest.raises(Exception, match=r"context\.expert"):
        client.runs.wait(thread_id, "coe", input=question, context={"expert": "ghost"})
    with pytest.raises(Exception, match="threshold"):
        client.runs.wait(thread_id, "coe", input=question, context={"threshold": 2})
    runs = client.runs.list(thread_id)
    assert [run["status"] for run in runs] == ["error", "error"]
    assert "ai" not in _kinds(client.threads.get_state(thread_id)["values"].get("messages", []))


def test_an_assistant_context_key_misspelt_is_refused_naming_it(client, new_thread):
    assistant = client.assistants.create("coe", context={"expret": "smollm2"}, name="coe with a typo")
    try:
        thread_id = new_thread()
        with pytest.raises(Exception, match=r"expret.*did you mean 'expert'"):
            client.runs.wait(thread_id, assistant["assistant_id"],
                             input={"messages": [{"role": "user", "content": "What is 7 times 8?"}]},
                             raise_error=True)
        assert [run["status"] for run in client.runs.list(thread_id)] == ["error"]
    finally:
        client.assistants.delete(assistant["assistant_id"])


def test_a_plan_streams_the_synthesizers_answer_and_credits_it(client, new_thread):
    """Studio's chat view on the planning graph: the streamed tokens are the synthesizer's alone (the
    planner's JSON is not streamed), and the reply is named after the synthesizer, with its usage."""
    thread_id = new_thread()
    answer_nodes, streamed_roles = set(), set()
    for part in client.runs.stream(thread_id, "coe-plan", input={"messages": [{"role": "user", "content":
                                   "Compute 17 * 23, then write one sentence about the history of multiplication."}]},
                                   stream_mode=["messages-tuple"]):
        if part.event == "messages":
            chunk, metadata = part.data
            if chunk.get("type") == "AIMessageChunk" and chunk.get("content"):
                streamed_roles.add(metadata.get("role"))
                if "coe:answer" in (metadata.get("tags") or []):
                    answer_nodes.add(metadata.get("langgraph_node"))
        elif part.event == "error":
            pytest.fail(f"streamed run failed: {part.data}")
    values = client.threads.get_state(thread_id)["values"]
    assert len(values["steps"]) >= 2 and values["plan_status"].startswith("planned")
    reply = values["messages"][-1]
    assert reply["name"] == "synthesizer" and reply["response_metadata"]["model_name"] == "synthesizer"
    assert reply["usage_metadata"]["output_tokens"] > 0
    assert answer_nodes == {"synthesizer"} and streamed_roles == {"synthesizer"}  # no planner JSON in the chat
