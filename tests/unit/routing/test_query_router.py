"""The query-level router live in the graph: same picks as replay, expected scores and prices in the decision."""

import json

import numpy as np
import pytest

from coe_router import build_graph, load_config
from coe_router.outcomes import read_outcomes
from coe_router.evaluation.replay import ReplayBench
from coe_router.routing.query_router import KnnRouter, KnnRouterParams
from tests.fakes import BagOfWordsEncoder, ScriptedChat
from tests.unit.conftest import CONFIG, write_config

TOPICS = {"math": ["equation", "integral", "sum", "algebra", "fraction"],
          "code": ["python", "function", "loop", "compile", "list"],
          "history": ["empire", "battle", "king", "revolution", "treaty"]}
EXPERTS = ["mathematician", "coder", "generalist"]


def synthetic(n: int, seed: int) -> tuple[list[dict], list[list[int]]]:
    """Questions made of topic words; each expert is good on its topic and at some words of the others."""
    rng = np.random.default_rng(seed)
    rows, scores = [], []
    for i in range(n):
        task = list(TOPICS)[i % 3]
        words = list(rng.choice(TOPICS[task], 3)) + list(rng.choice(sum(TOPICS.values(), []), 2))
        rows.append({"question_id": f"q{seed}-{i}", "category": task, "question": " ".join(words) + f" item{i % 17}"})
        strength = {"mathematician": 0.8 if task == "math" else 0.3, "coder": 0.8 if task == "code" else 0.3,
                    "generalist": 0.55}
        scores.append([int(rng.random() < strength[e] + (0.15 if "item3" in rows[-1]["question"] else 0)) for e in EXPERTS])
    return rows, scores


def write_outcomes(folder, name, rows, scores):
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ["question_id,category," + ",".join(EXPERTS)]
    lines += [f"{r['question_id']},{r['category']}," + ",".join(map(str, s)) for r, s in zip(rows, scores)]
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")


def knn_config(tmp_path, **router):
    train, train_scores = synthetic(300, seed=1)
    write_outcomes(tmp_path, "train", train, train_scores)
    spec = {"kind": "knn", "outcomes": "train.csv", "questions": "train.jsonl",
            "knn": {"k": 15, "prior": "task", "prior_strength": 3}, **router}
    return load_config(write_config(tmp_path, router=spec))


def fakes():
    return {name: ScriptedChat(reply=lambda p, n=name: f"from {n}", seen=[]) for name in CONFIG["models"]}


def test_live_graph_and_replay_pick_the_same_experts(tmp_path, store):
    config = knn_config(tmp_path)
    test_rows, test_scores = synthetic(200, seed=2)
    write_outcomes(tmp_path, "test", test_rows, test_scores)
    encoder = BagOfWordsEncoder()
    graph = build_graph(config, models=fakes(), store=store, encoder=encoder)
    live = [graph.invoke({"query": row["question"]})["decision"].expert for row in test_rows]

    train = read_outcomes(tmp_path / "train.csv", tmp_path / "train.jsonl")
    test = read_outcomes(tmp_path / "test.csv", tmp_path / "test.jsonl")
    bench = ReplayBench(train, test, encoder.encode(train.questions), encoder.encode(test.questions),
                        knn_params=config.router.knn)
    replayed = bench.run("knn-router")
    knn = KnnRouter(bench.models, bench.train_vectors, train.scores, train.categories.tolist(), config.router.knn)
    per_question = [bench.models[i] for i in knn.route(bench.test_vectors)]
    assert live == per_question
    counts = {m: round(live.count(m) / len(live), 4) for m in set(live)}
    assert counts == replayed.picks
    assert len(set(live)) == 3   # the router really chooses per query


def test_the_decision_carries_expected_scores_and_the_cost_weight_trades_them(tmp_path, store):
    priced = {name: {**spec, "price_per_1m_tokens": price}
              for (name, spec), price in zip(CONFIG["models"].items(), (10.0, 10.0, 1.0))}
    train, train_scores = synthetic(300, seed=1)
    write_outcomes(tmp_path, "train", train, train_scores)
    config = load_config(write_config(tmp_path, models=priced, router={
        "kind": "knn", "outcomes": "train.csv", "questions": "train.jsonl", "knn": {"k": 15}}))
    graph = build_graph(config, models=fakes(), store=store, encoder=BagOfWordsEncoder())
    query = "solve the equation with the integral of a fraction"
    decision = graph.invoke({"query": query})["decision"]
    assert decision.expert == "mathematician"
    scores = {c.expert: c.expected_score for c in decision.candidates}
    assert set(scores) == set(EXPERTS) and scores["mathematician"] == max(scores.values())
    assert {c.expert: c.price for c in decision.candidates}["generalist"] == 1.0
    cheap = graph.invoke({"query": query}, context={"cost_weight": 2.0})["decision"]
    assert cheap.expert == "generalist" and cheap.overrides == {"cost_weight": 2.0}


def test_a_knn_router_needs_its_memory(tmp_path):
    from coe_router.config import ConfigError

    with pytest.raises(ConfigError, match="router.outcomes"):
        load_config(write_config(tmp_path, router={"kind": "knn"}))
    assert KnnRouterParams().k == 100


def test_feedback_on_served_answers_changes_later_routing(tmp_path, store):
    from coe_router.routing.feedback import FeedbackError, FeedbackRecorder

    graph = build_graph(knn_config(tmp_path), models=fakes(), store=store, encoder=BagOfWordsEncoder())
    recorder = FeedbackRecorder(graph, journal=tmp_path / "feedback.jsonl")
    query = "solve the equation with the integral of a fraction"
    first = graph.invoke({"query": query})["decision"]
    assert first.expert == "mathematician"
    for n in range(12):   # the mathematician keeps getting this kind of question wrong, the generalist right
        recorder.served(f"a{n}", query, first.task, "mathematician")
        recorder.record(f"a{n}", 0.0)
        recorder.served(f"b{n}", query, first.task, "generalist")
        recorder.record(f"b{n}", 1.0)
    assert graph.invoke({"query": query})["decision"].expert == "generalist"
    journal = (tmp_path / "feedback.jsonl").read_text().splitlines()
    assert len(journal) == 24 and json.loads(journal[0])["model"] == "mathematician"
    with pytest.raises(FeedbackError, match="no served answer"):
        recorder.record("not-an-id", 1.0)
    with pytest.raises(FeedbackError, match=r"\[0, 1\]"):
        recorder.record("a0", 7)


def test_repeated_feedback_on_one_answer_counts_once_and_replaces(tmp_path, store):
    """Sixty `score: 0` posts on one completion once flipped the routing for everyone: now one completion is one
    observation, and a repeat replaces its score, in the task map and in the knn memory."""
    from coe_router.routing.feedback import FeedbackRecorder

    graph = build_graph(knn_config(tmp_path), models=fakes(), store=store, encoder=BagOfWordsEncoder())
    recorder = FeedbackRecorder(graph)
    query = "solve the equation with the integral of a fraction"
    first = graph.invoke({"query": query})["decision"]
    rows = len(graph.query_router.knn.memory.tasks)
    recorder.served("once", query, first.task, first.expert)
    for _ in range(60):
        recorder.record("once", 0.0)
    assert len(graph.query_router.knn.memory.tasks) == rows + 1
    assert graph.invoke({"query": query})["decision"].expert == first.expert
    recorder.record("once", 1.0)
    memory = graph.query_router.knn.memory
    assert memory.scores[rows, graph.query_router.knn.models.index(first.expert)] == 1.0


def test_a_repeated_score_replaces_the_earlier_one_in_the_task_map(config, store):
    from coe_router.routing.feedback import FeedbackRecorder

    graph = build_graph(config, models=fakes(), store=store)
    pool = graph.pool
    pool.record_outcome("math", "mathematician", 1.0)
    recorder = FeedbackRecorder(graph)
    recorder.served("c1", "solve 2x = 4", "math", "mathematician")
    for _ in range(10):
        recorder.record("c1", 0.0)
    assert pool.task_map.accuracy["math"]["mathematician"] == 0.5 and pool.task_map.counts["math"]["mathematician"] == 2
    recorder.record("c1", 1.0)
    assert pool.task_map.accuracy["math"]["mathematician"] == 1.0


def test_feedback_moves_the_task_map_without_retraining(config, store):
    from coe_router.routing.feedback import FeedbackRecorder

    board_graph = build_graph(config, models=fakes(), store=store)
    pool = board_graph.pool
    pool.record_outcome("math", "generalist", 1.0)
    assert pool.task_map.ranking["math"] == ["mathematician", "generalist"]   # mathematician has no accuracy yet
    pool.record_outcome("math", "mathematician", 0.0)
    assert pool.task_map.ranking["math"] == ["generalist", "mathematician"]
    recorder = FeedbackRecorder(board_graph)
    recorder.served("c1", "solve 2x = 4", "math", "mathematician")
    recorder.record("c1", 1.0)
    assert pool.task_map.accuracy["math"]["mathematician"] == 0.5
    assert board_graph.invoke({"query": "solve the equation 2x = 4"})["decision"].expert == "generalist"


def test_leaderboard_build_includes_the_feedback_journal(tmp_path, store, capsys):
    from coe_router.cli.main import main
    from coe_router.routing.feedback import FeedbackRecorder

    graph = build_graph(knn_config(tmp_path), models=fakes(), store=store, encoder=BagOfWordsEncoder())
    recorder = FeedbackRecorder(graph, journal=tmp_path / "feedback.jsonl")
    for n in range(300):
        recorder.served(f"f{n}", f"a history question number {n}", "history", "coder")
        recorder.record(f"f{n}", 1.0)
    base = ["leaderboard", "build", "--outcomes", str(tmp_path / "train.csv"), "--json"]
    assert main([*base, "--out", str(tmp_path / "before.json")]) == 0
    assert main([*base, "--feedback", str(tmp_path / "feedback.jsonl"), "--out", str(tmp_path / "after.json")]) == 0
    before = json.loads((tmp_path / "before.json").read_text())
    after = json.loads((tmp_path / "after.json").read_text())
    assert after["count"]["history"]["coder"] == before["count"]["history"]["coder"] + 300
    assert after["accuracy"]["history"]["coder"] > before["accuracy"]["history"]["coder"]
    assert after["best"]["history"] == "coder" != before["best"]["history"]


def test_the_ranking_puts_argmax_first_and_breaks_ties_in_preference_order():
    from coe_router.routing.query_router import argmax_with_ties, ranked_with_ties

    rng = np.random.default_rng(7)
    for _ in range(200):
        utility = rng.choice([0.1, 0.5, 0.5 + 1e-12, 0.9], size=8)  # ties, and near-ties within 1e-9
        order = rng.permutation(8)
        ranked = ranked_with_ties(utility, order)
        assert ranked[0] == argmax_with_ties(utility[None, :], order)[0]
        assert sorted(ranked.tolist()) == list(range(8))
        place = {model: rank for rank, model in enumerate(order.tolist())}
        keys = [(-round(float(utility[i]), 9), place[i]) for i in ranked.tolist()]
        assert keys == sorted(keys)
