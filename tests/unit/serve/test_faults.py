"""Fault injection: experts behind a closed port, a server that never answers, exceptions; nothing is dropped."""

import socket
import threading

import pytest

from coe_router import build_graph, load_config
from coe_router.models.factory import build_models
from coe_router.nodes import ExpertsFailedError
from coe_router.routing.fallback import COOLING_DOWN
from tests.fakes import FailingChat, ScriptedChat
from tests.unit.conftest import CONFIG, write_config


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: an expert that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    for conn in held:
        conn.close()
    listener.close()


def endpoint_config(tmp_path, math_url, timeout_s=0.5):
    models = dict(CONFIG["models"])
    models["math-model"] = {"provider": "openai", "model": "m", "base_url": math_url, "timeout_s": timeout_s,
                            "max_retries": 0}
    return load_config(write_config(tmp_path, models=models))


def test_closed_port_and_hanging_server_fall_back(tmp_path, store, silent_server):
    for url in (f"http://127.0.0.1:{closed_port()}/v1", f"http://127.0.0.1:{silent_server}/v1"):
        config = endpoint_config(tmp_path, url)
        real = build_models(config, {"math-model"})
        fakes = {"code-model": ScriptedChat(reply=lambda p: "code", seen=[]),
                 "general-model": ScriptedChat(reply=lambda p: "fallback answer", seen=[])}
        graph = build_graph(config, models={**real, **fakes}, store=store)
        results = [graph.invoke({"query": q}) for q in ("solve 2x + 3 = 7", "integral of x squared", "sum of ten integers")]
        for result in results:
            assert result["answer"] == "fallback answer"
            assert result["decision"].tried == ["mathematician", "generalist"]
            assert result["decision"].errors["mathematician"].split(":")[0] .endswith(("ConnectionError", "TimeoutError"))


def test_every_request_is_answered_or_fails_loudly(config, store):
    """Random failures: each of 30 requests is either answered by some expert or raises naming every expert tried."""
    import random

    rng = random.Random(3)

    class Flaky(ScriptedChat):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            if rng.random() < 0.6:
                raise TimeoutError("injected")
            return super()._generate(messages, stop, run_manager, **kwargs)

    models = {name: Flaky(reply=lambda p, n=name: n, seen=[]) for name in CONFIG["models"]}
    graph = build_graph(config, models=models, store=store)
    answered = failed = 0
    for i in range(30):
        try:
            result = graph.invoke({"query": f"solve equation number {i}"})
        except ExpertsFailedError as error:
            failed += 1
            assert set(error.errors) == {"mathematician", "generalist", "coder"}
            assert all("injected" in why or why == COOLING_DOWN for why in error.errors.values())
        else:
            answered += 1
            decision = result["decision"]
            assert decision.tried[-1] == decision.expert
            failed_here = {name for name, why in decision.errors.items() if why != COOLING_DOWN}
            assert failed_here == set(decision.tried[:-1])
    assert answered + failed == 30 and answered > 0 and failed > 0


def test_missing_api_key_env_names_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("COE_TEST_MISSING_KEY", raising=False)
    models = dict(CONFIG["models"])
    models["math-model"] = {"provider": "openai", "model": "m", "api_key_env": "COE_TEST_MISSING_KEY"}
    config = load_config(write_config(tmp_path, models=models))
    from coe_router import ConfigError

    with pytest.raises(ConfigError, match="models.math-model.api_key_env"):
        build_models(config)


def test_missing_model_file_names_the_model(tmp_path):
    models = {**CONFIG["models"], "math-model": {"provider": "llamacpp", "path": "nowhere.gguf"}}
    config = load_config(write_config(tmp_path, models=models))
    from coe_router import ConfigError

    with pytest.raises(ConfigError, match="models.math-model: model file not found"):
        build_models(config, {"math-model"})


def test_empty_and_oversized_queries_are_refused(config, store):
    from coe_router.inputs import InvalidQueryError

    graph = build_graph(config, models={n: FailingChat() for n in CONFIG["models"]}, store=store)
    for query in ("", "   \n", "x" * 20_001, "a\x00b"):
        with pytest.raises(InvalidQueryError):
            graph.invoke({"query": query})


def test_a_query_too_long_for_every_declared_context_window_is_refused_before_any_call(tmp_path, store):
    from coe_router import QueryTooLongError

    small = {name: {**spec, "context_window": 64, "max_tokens": 16} for name, spec in CONFIG["models"].items()}
    config = load_config(write_config(tmp_path, models=small))
    graph = build_graph(config, store=store)   # real ChatOpenAI experts on a closed port: a call would fail differently
    with pytest.raises(QueryTooLongError, match="too long for every expert.*context window is 64"):
        graph.invoke({"query": "solve the equation " + "x + " * 200 + "1 = 2"})
