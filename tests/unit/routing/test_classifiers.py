import pytest

from coe_router.prompts import format_classifier_prompt, parse_task
from coe_router.routing.classifiers import HybridClassifier, KnnClassifier, LlmClassifier, build_classifier
from coe_router.schema import RetrievedExample
from tests.fakes import FakeScorer, LocalFakeChat, ScriptedChat

TASKS = {"math": "arithmetic", "code": "programming", "history": "past events"}


def ex(task, score, i=0):
    return RetrievedExample(id=f"{task}{i}", question=f"a {task} question", task=task, score=score)


def test_knn_vote_is_weighted_by_similarity():
    knn = KnnClassifier(list(TASKS))
    decision = knn("q", None, [ex("math", 0.9), ex("code", 0.5, 1), ex("code", 0.3, 2)])
    assert decision.task == "math"
    assert decision.confidence == pytest.approx(0.9 / 1.7, abs=1e-3)
    assert decision.candidates["code"] == pytest.approx(0.8 / 1.7, abs=1e-3)


def test_knn_without_neighbours_or_below_min_confidence_is_unknown():
    assert KnnClassifier(list(TASKS))("q", None, []).task == "unknown"
    assert KnnClassifier(list(TASKS))("q", None, [ex("astrology", 0.9)]).task == "unknown"
    split = [ex("math", 0.5), ex("code", 0.5, 1)]
    assert KnnClassifier(list(TASKS), min_confidence=0.6)("q", None, split).task == "unknown"


def test_llm_on_chat_endpoint_parses_task_line_with_rag_prompt():
    model = ScriptedChat(reply=lambda prompt: "Thinking...\n***Task: Code ***", seen=[])
    decision = LlmClassifier(TASKS, model)("reverse a list", ["a", "b"], [ex("code", 0.8)])
    assert decision.task == "code" and decision.source == "llm"
    prompt = model.seen[0]
    assert "The tasks are as follows: math (arithmetic); code (programming)" in prompt
    assert "refer to the following examples" in prompt and "-> ***Task: code***" in prompt
    assert "- A. a" in prompt


def test_llm_without_examples_uses_prompt_1():
    model = ScriptedChat(reply=lambda prompt: "***Task: math***", seen=[])
    LlmClassifier(TASKS, model, use_examples=False)("2+2", None, [ex("code", 0.8)])
    assert "refer to the following examples" not in model.seen[0]


def test_llm_unparseable_answer_is_unknown():
    model = ScriptedChat(reply=lambda prompt: "I think it is about cooking", seen=[])
    assert LlmClassifier(TASKS, model)("q", None, []).task == "unknown"


def test_llm_on_local_model_scores_label_likelihood():
    scorer = FakeScorer({"math": -3.0, "code": -0.5, "history": -4.0})
    decision = LlmClassifier(TASKS, LocalFakeChat(local=scorer, seen=[]))("q", None, [])
    assert decision.task == "code"
    assert list(decision.candidates) == ["code", "math", "history"]
    assert sum(decision.candidates.values()) == pytest.approx(1.0, abs=1e-3)
    assert scorer.prompts[0].endswith("***Task: ")


def test_hybrid_uses_knn_when_confident_else_llm():
    model = ScriptedChat(reply=lambda prompt: "***Task: history***", seen=[])
    hybrid = HybridClassifier(KnnClassifier(list(TASKS)), LlmClassifier(TASKS, model), threshold=0.7)
    confident = hybrid("q", None, [ex("math", 0.9), ex("math", 0.8, 1)])
    assert (confident.task, confident.source) == ("math", "hybrid:knn") and model.seen == []
    unsure = hybrid("q", None, [ex("math", 0.5), ex("code", 0.5, 1)])
    assert (unsure.task, unsure.source) == ("history", "hybrid:llm")


def test_build_classifier_checks_kind_and_model():
    assert build_classifier("knn", TASKS).kind == "knn"
    with pytest.raises(ValueError, match="needs a model"):
        build_classifier("llm", TASKS)


@pytest.mark.parametrize(
    "text, task",
    [
        ("***Task: math***", "math"),
        ("***Task: [history] ***", "history"),
        ("** Task: CODE **", "code"),
        ("***Task: programming code***", "code"),
        ("Task: math", "unknown"),
        ("***Task: unknown***", "unknown"),
        ("***Task: astrology***", "unknown"),
    ],
)
def test_parse_task(text, task):
    assert parse_task(text, list(TASKS)) == task


def test_prompt_3_lists_examples_with_their_tasks():
    prompt = format_classifier_prompt(TASKS, "q?", None, [("what is 2+2", "math")])
    assert '- "what is 2+2" -> ***Task: math***' in prompt


def test_a_catastrophic_rule_runs_in_linear_time():
    """`^(a+)+$` on a non-matching query: a backtracking engine doubles its work with each extra character (37 s
    at 30 characters); on RE2 even 100,000 characters are immediate."""
    import time

    from coe_router.routing.classifiers import RulesClassifier

    rules = RulesClassifier({"math": ["^(a+)+$"], "code": ["python"]})
    started = time.monotonic()
    decision = rules("a" * 100_000 + "!", None, [])
    assert decision.task == "unknown" and time.monotonic() - started < 1.0
    assert rules("Write PYTHON code", None, []).task == "code"  # still case-insensitive
