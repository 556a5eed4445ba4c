"""Stateless replicas: two real `coe serve` processes on one real PostgreSQL (pgserver) and one real Chroma server
(`chroma run`), with the embedded default's local experts. A query paused for review on replica A is resumed
through replica B; examples indexed by another process are retrieved by both at once; an outcomes run split in two
shards and merged gives the rows of the unsplit run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bench.replicas import QUIET_ENV, chat, chroma_server, coe_replicas, postgres_server, replica_config
from coe_router import ConfigError, build_graph, load_config
from coe_router.persistence import checkpointer_from_config, open_async_checkpointer

pytestmark = pytest.mark.integration

# Queries whose five nearest examples disagree, before and after NEW_TOPIC is indexed: "unknown" at 0.99.
UNPLACEABLE = "purple elephant umbrella"
UNPLACEABLE_TOO = "blorp fizzle quantum teapot marmalade"
NEW_TOPIC = [  # five examples of one invented topic: its nearest neighbours once indexed, a unanimous vote
    "Which Zorblaxian emperor decreed the Great Quillfeather Tax of the year 3127?",
    "Under which Zorblaxian emperor was the Great Quillfeather Tax of 3127 decreed?",
    "The Great Quillfeather Tax of 3127 was decreed by which emperor of Zorblax?",
    "Name the emperor of the Zorblaxian dynasty who decreed the Quillfeather Tax in 3127.",
    "Who was the Zorblaxian ruler behind the Great Quillfeather Tax decree of 3127?",
]


@pytest.fixture(scope="module")
def cluster(local_config_path, tmp_path_factory):
    """PostgreSQL + Chroma server + two `coe serve` replicas on one config (review of unknown queries on)."""
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "logs").mkdir()
    base = yaml.safe_load(Path(local_config_path).read_text())
    with postgres_server() as dsn, chroma_server(folder / "chroma", folder / "logs") as chroma_url:
        config = replica_config(base, folder, chroma_url, collection="replica-examples", review_unknown=True,
                                min_confidence=0.99, n_threads=1)
        with coe_replicas(config, 2, dsn, folder / "logs") as urls:
            yield {"dsn": dsn, "chroma_url": chroma_url, "config": config, "urls": urls, "folder": folder}


def _thread_of(reply: httpx.Response) -> str:
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "needs_review"
    return re.search(r"thread ([0-9a-f]+)", error["message"]).group(1)


def test_a_query_paused_on_replica_a_is_resumed_through_replica_b(cluster):
    a, b = cluster["urls"]
    with httpx.Client(timeout=120) as client:
        thread = _thread_of(chat(client, a, UNPLACEABLE))
        resumed = client.post(f"{b}/v1/threads/{thread}/resume", json={"task": "history"})
        assert resumed.status_code == 200, resumed.text
        decision = resumed.json()["coe"]
        assert decision["task"] == "history" and decision["classifier"] == "knn+review"
        assert resumed.json()["choices"][0]["message"]["content"].strip()
        # The thread is finished for every replica: A sees B's resume in the shared checkpoints.
        again = client.post(f"{a}/v1/threads/{thread}/resume", json={"task": "history"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_paused"
        unknown = client.post(f"{b}/v1/threads/{'0' * 32}/resume", json={"task": "history"})
        assert unknown.status_code == 404


def test_a_wrong_review_answer_on_one_replica_leaves_the_thread_paused_for_the_other(cluster):
    a, b = cluster["urls"]
    with httpx.Client(timeout=120) as client:
        thread = _thread_of(chat(client, b, UNPLACEABLE_TOO))
        typo = client.post(f"{b}/v1/threads/{thread}/resume", json={"task": "histroy"})
        assert typo.status_code == 400
        done = client.post(f"{a}/v1/threads/{thread}/resume", json={"expert": "smollm2"})
        assert done.status_code == 200 and done.json()["coe"]["expert"] == "smollm2"


def test_examples_indexed_by_another_process_are_retrieved_by_both_replicas_at_once(cluster):
    a, b = cluster["urls"]
    query = NEW_TOPIC[0]
    with httpx.Client(timeout=120) as client:
        for url in (a, b):  # both replicas have searched (their in-memory copies are loaded) before the write
            before = chat(client, url, query)
            assert before.status_code == 409 or not {r["id"] for r in before.json()["coe"]["retrieved"]} & {
                f"zorblax-{i}" for i in range(len(NEW_TOPIC))}
        questions = cluster["folder"] / "zorblax.jsonl"
        questions.write_text("".join(json.dumps({"question_id": f"zorblax-{i}", "question": q, "category": "history"})
                                     + "\n" for i, q in enumerate(NEW_TOPIC)))
        env = {**os.environ, **QUIET_ENV, "COE_POSTGRES_DSN": cluster["dsn"]}
        done = subprocess.run([sys.executable, "-m", "coe_router.cli", "index", "build", "--config",
                               str(cluster["config"]), "--questions", str(questions)],
                              capture_output=True, text=True, timeout=180, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        for url in (b, a):  # the first query after the write, no retry: a server-backed store re-counts every search
            reply = chat(client, url, query)
            assert reply.status_code == 200, reply.text
            decision = reply.json()["coe"]
            assert {r["id"] for r in decision["retrieved"]} == {f"zorblax-{i}" for i in range(len(NEW_TOPIC))}
            assert decision["task"] == "history" and decision["confidence"] == 1.0


def _run_outcomes(config: Path, out: Path, shard: str | None, questions: Path, limit: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "coe_router.cli", "leaderboard", "run", "--config", str(config), "--questions",
               str(questions), "--limit", str(limit), "--out", str(out), "--concurrency", "1"]
    if shard:
        command += ["--shard", shard]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **QUIET_ENV})


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


SHORT_QUESTIONS = [  # short multiple-choice questions: the local experts score four letters each in milliseconds
    ("What is 2 + 2?", ["3", "4", "5", "6"], "B", "math"),
    ("Which planet is known as the red planet?", ["Venus", "Mars", "Jupiter", "Saturn"], "B", "biology"),
    ("What is the capital of France?", ["Paris", "Rome", "Madrid", "Berlin"], "A", "history"),
    ("Which gas do plants absorb?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], "C", "biology"),
    ("What is 10 divided by 2?", ["2", "5", "10", "20"], "B", "math"),
    ("Which data structure is first in, first out?", ["Stack", "Queue", "Tree", "Heap"], "B", "computer science"),
    ("Who wrote the Odyssey?", ["Homer", "Virgil", "Dante", "Ovid"], "A", "history"),
    ("Which organ pumps blood?", ["Liver", "Lung", "Heart", "Kidney"], "C", "health"),
    ("What does a court of appeal review?", ["Lower court decisions", "Tax forms", "Maps", "Recipes"], "A", "law"),
    ("How many bits are in a byte?", ["4", "8", "16", "32"], "B", "computer science"),
]


def test_an_outcomes_run_split_across_two_workers_merges_into_the_unsplit_rows(cluster):
    folder = cluster["folder"] / "outcomes"
    folder.mkdir()
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": f"q{i:02d}", "category": task, "question": text,
                                             "options": options, "answer": answer}) + "\n"
                                 for i, (text, options, answer, task) in enumerate(SHORT_QUESTIONS)))
    limit = 6  # --limit applies before --shard: the shards split the same six questions
    # The two shards run at once (two workers); the unsplit run after them (llama.cpp's batch threads of three
    # processes on two cores would slow each other down several times over).
    for batch in ((("first", "1/2"), ("second", "2/2")), (("whole", None),)):
        runs = {name: _run_outcomes(cluster["config"], folder / f"{name}.csv", shard, questions, limit)
                for name, shard in batch}
        for name, process in runs.items():
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, f"{name}: {err[-2000:]}"
    first, second = _rows(folder / "first.csv")[1:], _rows(folder / "second.csv")[1:]
    assert first and second and not {r[0] for r in first} & {r[0] for r in second}  # a partition

    cli = [sys.executable, "-m", "coe_router.cli", "leaderboard", "merge"]
    merged = subprocess.run(cli + [str(folder / "second.csv"), str(folder / "first.csv"), "--out",
                                   str(folder / "all.csv"), "--questions", str(questions)],
                            capture_output=True, text=True, timeout=60)
    assert merged.returncode == 0, merged.stderr
    assert (folder / "all.csv").read_text() == (folder / "whole.csv").read_text()
    assert len(_rows(folder / "all.csv")) == limit + 1

    # A shard merged twice adds no row; a shard that disagrees with another about a cell is refused, named.
    again = subprocess.run(cli + [str(folder / "first.csv"), str(folder / "second.csv"), str(folder / "first.csv"),
                                  "--out", str(folder / "twice.csv"), "--questions", str(questions)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (folder / "twice.csv").read_text() == (folder / "whole.csv").read_text()
    header, row = _rows(folder / "first.csv")[0], _rows(folder / "first.csv")[1]
    flipped = [row[0], row[1], "0" if row[2] == "1" else "1", *row[3:]]
    with (folder / "bad.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, flipped])
    refused = subprocess.run(cli + [str(folder / "first.csv"), str(folder / "bad.csv"), "--out",
                                    str(folder / "refused.csv")], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and not (folder / "refused.csv").exists()
    assert f"{row[0]} {header[2]}: {row[2]} in " in refused.stderr and "bad.csv" in refused.stderr


def test_the_agent_server_config_serves_the_router_and_keeps_review_on_its_own_checkpointer(cluster):
    """`langgraph dev` (LangGraph's Agent Server, in-memory runtime) on deploy/langgraph.json with the replicas'
    config: the graph loads without opening the config's PostgreSQL (its variable is unset here), an unknown query
    pauses on the server's checkpointer and resumes there."""
    import shutil
    import signal

    from langgraph_sdk import get_sync_client

    from bench.replicas import free_port

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    scratch = deploy / ".langgraph_api"
    existed = scratch.exists()
    env = {**os.environ, **QUIET_ENV, "COE_CONFIG": str(cluster["config"]), "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    for name in ("COE_POSTGRES_DSN", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        env.pop(name, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = cluster["folder"] / "logs" / "agent-server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("langgraph")), "dev", "--config",
                                   "langgraph.json", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                                   "--no-reload"], cwd=deploy, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        client = get_sync_client(url=url)
        thread = client.threads.create()["thread_id"]
        client.runs.wait(thread, "coe", input={"messages": [{"role": "user", "content": UNPLACEABLE}]})
        state = client.threads.get_state(thread)
        assert state["next"] == ["review"] and any(task["interrupts"] for task in state["tasks"])
        done = client.runs.wait(thread, "coe", command={"resume": {"task": "history"}})
        assert done["decision"]["task"] == "history" and done["decision"]["classifier"] == "knn+review"
        assert done["messages"][-1]["type"] == "ai"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        if not existed:
            shutil.rmtree(scratch, ignore_errors=True)


# The checkpointer itself, in process, on the same PostgreSQL (the unit tests' fake config and examples).

@pytest.fixture
def store(tmp_path):
    from coe_router.retrieval.store import ExampleStore, chroma_collection
    from tests.fakes import BagOfWordsEncoder
    from tests.unit.conftest import EXAMPLES

    examples = ExampleStore(chroma_collection("test-examples", tmp_path / "chroma"), BagOfWordsEncoder())
    examples.add(EXAMPLES)
    return examples


def _review_config(tmp_path, dsn_env="COE_POSTGRES_DSN"):
    from tests.unit.conftest import write_config

    return load_config(write_config(tmp_path, persistence={"checkpointer": "postgres", "dsn_env": dsn_env,
                                                           "review_unknown": True}))


def test_postgres_needs_its_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("COE_TEST_UNSET_DSN", raising=False)
    config = _review_config(tmp_path, "COE_TEST_UNSET_DSN")
    with pytest.raises(ConfigError, match=r"^persistence\.dsn_env: the environment variable COE_TEST_UNSET_DSN is not set"):
        checkpointer_from_config(config)


def test_postgres_names_the_variable_when_the_database_cannot_be_reached(tmp_path, monkeypatch):
    monkeypatch.setenv("COE_POSTGRES_DSN", "postgresql://nobody:secret@127.0.0.1:29999/none?connect_timeout=2")
    with pytest.raises(ConfigError, match=r"persistence\.dsn_env: cannot connect to PostgreSQL through "
                                          r"\$COE_POSTGRES_DSN") as caught:
        checkpointer_from_config(_review_config(tmp_path))
    assert "secret" not in str(caught.value)


def test_sync_and_async_savers_share_threads(cluster, tmp_path, monkeypatch, store):
    """The library's PostgresSaver pauses a run; a second graph (another process would do the same) on the async
    saver resumes it."""
    from langgraph.types import Command

    from tests.fakes import ScriptedChat

    monkeypatch.setenv("COE_POSTGRES_DSN", cluster["dsn"])
    config = _review_config(tmp_path)
    models = {name: ScriptedChat(reply=lambda p, n=name: f"answer from {n}", seen=[])
              for name in ("math-model", "code-model", "general-model")}
    saver = checkpointer_from_config(config)
    thread = {"configurable": {"thread_id": f"lib-{os.getpid()}-{time.time_ns()}"}}
    try:
        paused = build_graph(config, models=models, store=store, checkpointer=saver).invoke({"query": "zzz qqq"}, thread)
        assert "__interrupt__" in paused
    finally:
        saver.conn.close()

    async def resume():
        async with open_async_checkpointer(config) as async_saver:
            graph = build_graph(config, models=models, store=store, checkpointer=async_saver)
            return await graph.ainvoke(Command(resume={"task": "code"}), thread)

    resumed = asyncio.run(resume())
    assert resumed["decision"].task == "code" and resumed["answer"] == "answer from code-model"
