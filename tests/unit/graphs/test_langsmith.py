"""LangSmith traces, as LangSmith receives them: the router's run is named `coe-router` and carries the routing
decision as metadata and `task:`/`expert:` tags, and with a priced usage tally what the run cost.

langsmith's own Client and LangChain's LangChainTracer send the trace to a local server (tests/langsmith_capture.py)
that decodes every ingest endpoint the client uses; nothing leaves 127.0.0.1.
"""

import json
import time

import pytest
from langchain_core.tracers.langchain import LangChainTracer

from coe_router import CoERouterChatModel, build_graph, load_config
from coe_router.defaults import ROUTER_TAG, RUN_NAME
from coe_router.serve.costs import call_prices
from coe_router.tracing.usage import CallUsage
from tests.fakes import FailingChat, ScriptedChat
from tests.langsmith_capture import LangSmithCapture
from tests.unit.conftest import CONFIG, write_config

MATH = "solve the equation 5x = 10"
DECISION_KEYS = {"task", "confidence", "classifier", "expert", "routed_expert", "fallbacks", "fallback_used",
                 "failed_experts", "consulted", "aggregation", "retrieved_ids", "retrieved_scores",
                 "task_map_version", "overrides"}
SERVED = {("GET", "/info"), ("POST", "/runs/multipart"), ("POST", "/runs/batch"), ("POST", "/runs")}

# Settings that would send the client elsewhere, or trace every LangChain call of the test process.
LANGSMITH_ENV = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT",
                 "LANGSMITH_RUNS_ENDPOINTS", "LANGSMITH_OTEL_ENABLED", "LANGSMITH_OTEL_ONLY", "OTEL_ENABLED",
                 "OTEL_ONLY", "LANGSMITH_TRACING_SAMPLING_RATE", "LANGCHAIN_TRACING_SAMPLING_RATE")


def experts(math=None):
    return {"math-model": math or ScriptedChat(reply=lambda p: "x = 2", seen=[]),
            "code-model": ScriptedChat(reply=lambda p: "def f(): pass", seen=[]),
            "general-model": ScriptedChat(reply=lambda p: "general", seen=[])}


class Traced:
    """One LangSmith client + tracer sending to a capture server; `flush()` returns the runs it received."""

    def __init__(self, server: LangSmithCapture, **client_kwargs):
        self.server = server
        self.client = server.client(**client_kwargs)
        self.tracer = LangChainTracer(client=self.client, project_name="coe-test")
        if server.ingest == "zstd":
            # the client turns compression on in its sender thread, after GET /info; runs queued before that
            # go uncompressed
            deadline = time.monotonic() + 10
            while self.client.compressed_traces is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert self.client.compressed_traces is not None, "the client did not turn compression on"

    @property
    def config(self) -> dict:
        return {"callbacks": [self.tracer]}

    def flush(self) -> dict[str, dict]:
        self.tracer.wait_for_futures()
        self.client.flush(timeout=30)
        assert not self.server.errors, self.server.errors
        unexpected = [(m, p) for m, p, _ in self.server.requests
                      if (m, p) not in SERVED and not (m == "PATCH" and p.startswith("/runs/"))]
        assert not unexpected, unexpected
        return self.server.runs()

    def close(self) -> None:
        self.client.cleanup(timeout=5)


@pytest.fixture
def langsmith(monkeypatch):
    """A factory of Traced clients, each on its own capture server (an ingest mode); env restored afterwards."""
    for name in LANGSMITH_ENV:
        monkeypatch.delenv(name, raising=False)
    opened: list[tuple[LangSmithCapture, Traced]] = []

    def make(ingest: str = "multipart", **client_kwargs) -> Traced:
        server = LangSmithCapture(ingest).__enter__()
        traced = Traced(server, **client_kwargs)
        opened.append((server, traced))
        return traced

    yield make
    for server, traced in opened:
        traced.close()
        server.__exit__(None, None, None)


def metadata(run: dict) -> dict:
    return (run.get("extra") or {}).get("metadata") or {}


def decision_tags(run: dict) -> list[str]:
    return sorted(tag for tag in run.get("tags") or [] if tag.startswith(("task:", "expert:")))


def the_root(runs: dict[str, dict]) -> dict:
    roots = [run for run in runs.values() if not run.get("parent_run_id")]
    assert len(roots) == 1, [run.get("name") for run in roots]
    return roots[0]


def assert_carries(run: dict, decision) -> None:
    """The run's metadata and tags are `decision` (after fallbacks), as LangSmith stores them (JSON)."""
    meta = metadata(run)
    assert DECISION_KEYS <= set(meta), sorted(DECISION_KEYS - set(meta))
    assert meta["task"] == decision.task and meta["expert"] == decision.expert
    assert meta["confidence"] == pytest.approx(decision.confidence)
    assert meta["classifier"] == decision.classifier and meta["fallbacks"] == decision.fallbacks
    assert meta["retrieved_ids"] == [example.id for example in decision.retrieved]
    assert meta["retrieved_scores"] == pytest.approx([example.score for example in decision.retrieved])
    assert meta["task_map_version"] == decision.task_map_version
    assert decision_tags(run) == sorted([f"task:{decision.task}", f"expert:{decision.expert}"])


@pytest.mark.parametrize("ingest,client_kwargs", [
    ("multipart", {}),                            # POST /runs/multipart, the client's default
    ("zstd", {}),                                 # the same, zstd-compressed (LangSmith with compression on)
    ("batch", {}),                                # POST /runs/batch (use_multipart_endpoint: false)
    ("multipart", {"auto_batch_tracing": False}),  # POST /runs at start, PATCH /runs/<id> at end
], ids=["multipart", "zstd", "batch", "post-patch"])
def test_root_run_is_coe_router_and_carries_the_decision(langsmith, config, store, ingest, client_kwargs):
    traced = langsmith(ingest, **client_kwargs)
    graph = build_graph(config, models=experts(), store=store)
    result = graph.invoke({"query": MATH}, config=traced.config)       # no run_name: the graph's own name
    runs = traced.flush()

    root = the_root(runs)
    assert root["name"] == RUN_NAME and root["run_type"] == "chain"
    decision = result["decision"]
    assert decision.task == "math" and decision.expert == "mathematician"
    assert_carries(root, decision)
    meta = metadata(root)
    assert meta["routed_expert"] == "mathematician" and meta["fallback_used"] is False
    assert meta["failed_experts"] == [] and meta["overrides"] == {}
    assert meta["retrieved_ids"] and all(isinstance(score, float) for score in meta["retrieved_scores"])
    # one router run per query: no node or model run is named like the router
    assert [run["name"] for run in runs.values()].count(RUN_NAME) == 1
    names = {run["name"] for run in runs.values()}
    assert {"router", "intake", "retriever", "classifier", "expert_choice", "mathematician"} <= names
    encodings = {encoding for method, path, encoding in traced.server.requests if path.startswith("/runs")}
    assert encodings == ({"zstd"} if ingest == "zstd" else {""})


def test_the_final_update_itself_carries_the_decision(langsmith, config, store):
    """The decision is known after the run starts: the run's last PATCH must carry it (LangSmith keeps the
    update's tags and metadata), and its create must not claim a decision yet."""
    traced = langsmith("multipart", auto_batch_tracing=False)
    result = build_graph(config, models=experts(), store=store).invoke({"query": MATH}, config=traced.config)
    root_id = the_root(traced.flush())["id"]
    created = [run for op, run in traced.server.operations if op == "post" and str(run["id"]) == root_id]
    updated = [run for op, run in traced.server.operations if op == "patch" and str(run["id"]) == root_id]
    assert len(created) == 1 and len(updated) == 1
    assert decision_tags(created[0]) == [] and "expert" not in metadata(created[0])
    assert_carries(updated[0], result["decision"])


def test_a_fallback_answer_names_the_answering_expert_only(langsmith, config, store):
    traced = langsmith()
    graph = build_graph(config, models=experts(math=FailingChat()), store=store)
    result = graph.invoke({"query": MATH}, config=traced.config)
    runs = traced.flush()

    root = the_root(runs)
    assert root["name"] == RUN_NAME
    assert_carries(root, result["decision"])
    meta = metadata(root)
    assert meta["expert"] == "generalist" and meta["routed_expert"] == "mathematician"
    assert meta["fallback_used"] is True and meta["failed_experts"] == ["mathematician"]
    assert decision_tags(root) == ["expert:generalist", "task:math"]      # the router's expert:mathematician is gone
    failed = next(run for run in runs.values() if run["name"] == "mathematician")
    assert "connection refused" in failed["error"]


def test_a_pinned_expert_is_recorded_as_an_override(langsmith, config, store):
    traced = langsmith()
    graph = build_graph(config, models=experts(), store=store)
    result = graph.invoke({"query": MATH}, config=traced.config, context={"expert": "coder"})
    root = the_root(traced.flush())

    assert root["name"] == RUN_NAME and result["decision"].expert == "coder"
    assert_carries(root, result["decision"])
    assert metadata(root)["overrides"] == {"expert": "coder"}
    assert decision_tags(root) == ["expert:coder", "task:math"]


def test_the_callers_tags_and_metadata_stay_and_only_the_router_run_is_annotated(langsmith, config, store):
    traced = langsmith()
    graph = build_graph(config, models=experts(math=FailingChat()), store=store)
    result = graph.invoke({"query": MATH}, config={**traced.config, "tags": [ROUTER_TAG, "my-app"],
                                                   "metadata": {"user": "u1"}})
    runs = traced.flush()
    root = the_root(runs)
    assert_carries(root, result["decision"])
    assert {ROUTER_TAG, "my-app"} <= set(root["tags"]) and metadata(root)["user"] == "u1"
    for name in ("router", "intake", "retriever", "classifier", "expert_choice", "expert"):
        node = next(run for run in runs.values() if run["name"] == name)
        assert "expert" not in metadata(node) and decision_tags(node) == [], name


def test_a_fanout_vote_is_no_fallback(langsmith, tmp_path, store):
    config = load_config(write_config(tmp_path, fanout=3))
    models = {"math-model": ScriptedChat(reply=lambda p: "the answer is (A)", seen=[]),
              "code-model": ScriptedChat(reply=lambda p: "so the answer is (B)", seen=[]),
              "general-model": ScriptedChat(reply=lambda p: "the answer is (B)", seen=[])}
    traced = langsmith()
    result = build_graph(config, models=models, store=store).invoke(
        {"query": "solve the equation x + 1 = 2", "options": ["1", "2", "3"]}, config=traced.config)
    root = the_root(traced.flush())
    decision = result["decision"]
    assert decision.expert == "generalist" and decision.aggregation == "vote 2/3"
    assert_carries(root, decision)
    meta = metadata(root)
    assert meta["routed_expert"] == "mathematician" and meta["fallback_used"] is False
    assert meta["consulted"] == ["mathematician", "generalist", "coder"] and meta["aggregation"] == "vote 2/3"


def test_a_failed_routed_expert_in_a_fanout_is_a_fallback(langsmith, tmp_path, store):
    config = load_config(write_config(tmp_path, fanout=2))
    traced = langsmith()
    result = build_graph(config, models=experts(math=FailingChat()), store=store).invoke(
        {"query": MATH}, config=traced.config)
    root = the_root(traced.flush())
    assert_carries(root, result["decision"])
    meta = metadata(root)
    assert meta["expert"] == "generalist" and meta["routed_expert"] == "mathematician"
    assert meta["fallback_used"] is True and meta["failed_experts"] == ["mathematician"]


async def test_async_runs_are_annotated_too(langsmith, config, store):
    traced = langsmith()
    graph = build_graph(config, models=experts(math=FailingChat()), store=store)
    result = await graph.ainvoke({"query": MATH}, config=traced.config)
    root = the_root(traced.flush())
    assert root["name"] == RUN_NAME
    assert_carries(root, result["decision"])
    assert decision_tags(root) == ["expert:generalist", "task:math"]


def test_through_the_chat_model_the_nested_router_run_carries_the_decision(langsmith, config, store):
    traced = langsmith()
    graph = build_graph(config, models=experts(math=FailingChat()), store=store)
    reply = CoERouterChatModel.from_graph(graph).invoke(MATH, config=traced.config)
    runs = traced.flush()

    root = the_root(runs)
    assert root["run_type"] == "llm" and root["name"] != RUN_NAME       # the LangChain app's own call
    routers = [run for run in runs.values() if run["name"] == RUN_NAME]
    assert len(routers) == 1
    router = routers[0]
    assert str(router["parent_run_id"]) == str(root["id"])
    coe = reply.response_metadata["coe"]
    assert coe["expert"] == "generalist" and coe["task"] == "math"
    meta = metadata(router)
    assert DECISION_KEYS <= set(meta)
    assert meta["task"] == "math" and meta["expert"] == "generalist" and meta["routed_expert"] == "mathematician"
    assert meta["fallback_used"] is True and meta["failed_experts"] == ["mathematician"]
    assert decision_tags(router) == ["expert:generalist", "task:math"]


PLAN = {"subtasks": [
    {"text": "compute the sum of the first ten integers", "task": "math"},
    {"text": "write a python function that returns that sum", "task": "code"},
]}


def test_planned_run_root_carries_the_plan_and_each_step_its_own_decision(langsmith, config, store):
    plan_config = config.replace(
        mode="plan",
        models={**config.model_dump(by_alias=True)["models"],
                "planner-model": {"provider": "openai", "model": "p", "base_url": "http://127.0.0.1:9/v1"}},
        planner={"model": "planner-model", "max_steps": 3},
    )
    planner = ScriptedChat(reply=lambda p: "FINAL" if p.startswith("Experts worked") else json.dumps(PLAN), seen=[])
    traced = langsmith()
    graph = build_graph(plan_config, models={**experts(), "planner-model": planner}, store=store)
    result = graph.invoke({"query": "sum 1..10 then code it"}, config=traced.config)
    runs = traced.flush()

    assert result["plan_status"] == "planned" and result["answer"] == "FINAL"
    root = the_root(runs)
    assert root["name"] == RUN_NAME
    # the synthesizer wrote the answer: the root says so and names every step's task and expert, not the last
    assert metadata(root)["mode"] == "plan" and metadata(root)["answered_by"] == "synthesizer"
    assert metadata(root)["plan_experts"] == ["mathematician", "coder"] and metadata(root)["plan_tasks"] == ["math", "code"]
    assert decision_tags(root) == ["expert:coder", "expert:mathematician", "expert:synthesizer", "task:code", "task:math"]
    assert "mode:plan" in root["tags"]
    answer = result["messages"][-1]
    assert answer.name == "synthesizer" and answer.response_metadata["model_name"] == "synthesizer"
    assert answer.usage_metadata["output_tokens"] == 1                  # the synthesizer's own tokens ("FINAL")
    planner_runs = [run for run in runs.values() if run.get("run_type") == "llm" and "coe:planner" in (run.get("tags") or [])]
    assert len(planner_runs) == 1                                       # the planner's model call is an LLM run
    steps = sorted((run for run in runs.values() if run["name"] == RUN_NAME and run.get("parent_run_id")),
                   key=lambda run: run["dotted_order"])
    assert [(metadata(run)["task"], metadata(run)["expert"]) for run in steps] == [
        ("math", "mathematician"), ("code", "coder")]
    assert [decision_tags(run) for run in steps] == [["expert:mathematician", "task:math"],
                                                     ["expert:coder", "task:code"]]


# -- the run's cost, next to the decision ---------------------------------------------------------------------------

class ModelNamedChat(ScriptedChat):
    """A scripted model that names its model id on its runs (`ls_model_name`), as ChatOpenAI does."""

    def _get_ls_params(self, stop=None, **kwargs):
        return {**super()._get_ls_params(stop=stop, **kwargs), "ls_model_name": "p"}


def priced(tmp_path, **prices):
    """The test config with dollars per 1M tokens on the models named (the others unpriced)."""
    models = {name: {**spec, **({"price_per_1m_tokens": prices[name]} if name in prices else {})}
              for name, spec in CONFIG["models"].items()}
    return load_config(write_config(tmp_path, models=models))


def test_a_priced_run_carries_its_cost_next_to_the_decision(langsmith, tmp_path, store):
    config = priced(tmp_path, **{"math-model": 2.0})
    traced = langsmith()
    usage = CallUsage(call_prices(config))
    result = build_graph(config, models=experts(), store=store).invoke(
        {"query": MATH}, config={"callbacks": [usage, traced.tracer]})
    root = the_root(traced.flush())
    assert_carries(root, result["decision"])
    cost = metadata(root)["cost"]
    used_in, used_out = usage.by_model["mathematician"]
    dollars = (used_in + used_out) * 2.0 / 1e6
    assert used_in > 0 and used_out > 0
    assert cost["dollars"] == pytest.approx(dollars) and metadata(root)["cost_dollars"] == pytest.approx(dollars)
    assert cost["unpriced"] == [] and cost["by_model"] == {"mathematician": pytest.approx(dollars)}
    assert cost["tokens"] == {"input": used_in, "output": used_out,
                              "by_model": {"mathematician": {"input": used_in, "output": used_out}}}
    assert cost == {**usage.cost(), "tokens": cost["tokens"]}              # the response's figure, and its tokens


def test_an_unpriced_run_says_so_instead_of_counting_nothing(langsmith, tmp_path, store):
    config = priced(tmp_path, **{"math-model": 2.0})                       # the generalist's model has no price
    traced = langsmith()
    graph = build_graph(config, models=experts(math=FailingChat()), store=store)
    result = graph.invoke({"query": MATH}, config={"callbacks": [CallUsage(call_prices(config)), traced.tracer]})
    root = the_root(traced.flush())
    assert result["decision"].expert == "generalist"
    meta = metadata(root)
    assert meta["cost_dollars"] == "unpriced"
    assert meta["cost"]["dollars"] is None and meta["cost"]["unpriced"] == ["generalist"]
    assert meta["cost"]["by_model"] == {"generalist": None}                # the failed call used nothing


def test_without_a_priced_tally_a_run_carries_no_cost(langsmith, config, store):
    traced = langsmith()
    build_graph(config, models=experts(), store=store).invoke(
        {"query": MATH}, config={"callbacks": [CallUsage(), traced.tracer]})
    assert "cost" not in metadata(the_root(traced.flush()))


def test_a_planned_run_carries_the_cost_of_every_step_on_its_root_only(langsmith, tmp_path, store):
    base = priced(tmp_path, **{"math-model": 1.0, "code-model": 1.0})
    plan_config = base.replace(
        mode="plan",
        models={**base.model_dump(by_alias=True)["models"],
                "planner-model": {"provider": "openai", "model": "p", "base_url": "http://127.0.0.1:9/v1",
                                  "price_per_1m_tokens": 1.0}},
        planner={"model": "planner-model", "max_steps": 3},
    )
    planner = ModelNamedChat(reply=lambda p: "FINAL" if p.startswith("Experts worked") else json.dumps(PLAN), seen=[])
    traced = langsmith()
    usage = CallUsage(call_prices(plan_config))
    graph = build_graph(plan_config, models={**experts(), "planner-model": planner}, store=store)
    graph.invoke({"query": "sum 1..10 then code it"}, config={"callbacks": [usage, traced.tracer]})
    runs = traced.flush()
    root = the_root(runs)
    tokens = sum(used_in + used_out for used_in, used_out in usage.by_model.values())
    assert set(usage.by_model) == {"mathematician", "coder", "p"}          # the planner's calls by its model id
    assert metadata(root)["cost_dollars"] == pytest.approx(tokens * 1.0 / 1e6)
    steps = [run for run in runs.values() if run["name"] == RUN_NAME and run.get("parent_run_id")]
    assert len(steps) == 2 and all("cost" not in metadata(run) for run in steps)
