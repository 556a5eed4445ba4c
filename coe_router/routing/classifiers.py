"""Task classifiers: put a query in one of the configured tasks, or "unknown" (CoE-Ops eq. 6-7).

Each classifier is a callable `(query, options, retrieved) -> TaskDecision`, so the graph node, the evaluation
commands and the benchmarks share one implementation.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Protocol, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from coe_router.defaults import UNKNOWN_TASK
from coe_router.models.scoring import LikelihoodScorer, likelihood_scorer
from coe_router.prompts.classifier import ANSWER_PREFIX, format_classifier_prompt, parse_task
from coe_router.schema import RetrievedExample, TaskDecision


class TaskClassifier(Protocol):
    kind: str

    def __call__(self, query: str, options: Sequence[str] | None, retrieved: Sequence[RetrievedExample]) -> TaskDecision: ...

    def with_threshold(self, threshold: float) -> "TaskClassifier":
        """A copy that needs `threshold` confidence (per-run control); ValueError if the kind has none."""
        ...


def _copy_with(classifier, **changes):
    clone = copy.copy(classifier)
    for name, value in changes.items():
        setattr(clone, name, value)
    return clone


def _softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    exps = {name: math.exp(value - top) for name, value in scores.items()}
    total = sum(exps.values())
    return {name: value / total for name, value in exps.items()}


class KnnClassifier:
    """Similarity-weighted vote of the retrieved examples' labels; confidence is the winner's share of the vote.

    Labels that are not configured tasks are ignored, so an index may hold more tasks than a config routes.
    """

    kind = "knn"

    def __init__(self, tasks: Sequence[str], min_confidence: float = 0.0):
        self.tasks = set(tasks)
        self.min_confidence = min_confidence

    def with_threshold(self, threshold: float) -> "KnnClassifier":
        return _copy_with(self, min_confidence=threshold)

    def __call__(self, query, options, retrieved) -> TaskDecision:
        votes: dict[str, float] = defaultdict(float)
        for example in retrieved:
            if example.task in self.tasks:
                votes[example.task] += max(example.score, 0.0)
        total = sum(votes.values())
        if total <= 0:
            return TaskDecision(source=self.kind)
        shares = {task: round(weight / total, 4) for task, weight in sorted(votes.items(), key=lambda kv: -kv[1])}
        task, confidence = next(iter(shares.items()))
        if confidence < self.min_confidence:
            task = UNKNOWN_TASK
        return TaskDecision(task=task, confidence=confidence, source=self.kind, candidates=shares)


class LlmClassifier:
    """CoE-Ops Prompt 1 (Prompt 3 with retrieved examples) on a general-purpose model.

    A local llama.cpp model scores every task label's likelihood after "***Task: " (eq. 6 as an argmax over
    labels; mean log-probability per token, so long labels are not penalised); a chat endpoint generates and the
    "***Task: ...***" it writes is parsed. An answer naming no configured task is "unknown" (eq. 7).
    """

    kind = "llm"

    def __init__(self, tasks: dict[str, str], model: BaseChatModel, use_examples: bool = True,
                 min_confidence: float = 0.0):
        self.tasks = tasks
        self.model = model
        self.use_examples = use_examples
        self.min_confidence = min_confidence

    def with_threshold(self, threshold: float) -> "LlmClassifier":
        return _copy_with(self, min_confidence=threshold)

    def prompt(self, query: str, options: Sequence[str] | None, retrieved: Sequence[RetrievedExample]) -> str:
        examples = [(e.question, e.task) for e in retrieved] if self.use_examples else []
        return format_classifier_prompt(self.tasks, query, options, examples)

    def __call__(self, query, options, retrieved) -> TaskDecision:
        prompt = self.prompt(query, options, retrieved)
        config = {"run_name": "task-classifier", "tags": ["coe:classifier"], "metadata": {"role": "classifier"}}
        scorer = likelihood_scorer(self.model)
        if scorer is not None:
            return self._by_likelihood(scorer, prompt, config)
        reply = self.model.invoke([HumanMessage(prompt)], config=config)
        task = parse_task(reply.text, list(self.tasks))
        return TaskDecision(task=task, confidence=1.0 if task != UNKNOWN_TASK else 0.0, source=self.kind)

    def _by_likelihood(self, scorer: LikelihoodScorer, prompt: str, config: dict) -> TaskDecision:
        labels = list(self.tasks)
        scored = scorer.score_continuations(prompt + "\n\n" + ANSWER_PREFIX, [f"{label} ***" for label in labels],
                                            config=config)
        probabilities = _softmax({label: total / count for label, (total, count) in zip(labels, scored)})
        ranked = dict(sorted(((k, round(v, 4)) for k, v in probabilities.items()), key=lambda kv: -kv[1]))
        task, confidence = next(iter(ranked.items()))
        if confidence < self.min_confidence:
            task = UNKNOWN_TASK
        return TaskDecision(task=task, confidence=confidence, source=self.kind, candidates=ranked)


class HybridClassifier:
    """knn at embedding speed when its vote is confident enough, the llm classifier (with examples) otherwise."""

    kind = "hybrid"

    def __init__(self, knn: KnnClassifier, llm: LlmClassifier, threshold: float):
        self.knn = knn
        self.llm = llm
        self.threshold = threshold

    def with_threshold(self, threshold: float) -> "HybridClassifier":
        return _copy_with(self, threshold=threshold)

    def __call__(self, query, options, retrieved) -> TaskDecision:
        vote = self.knn(query, options, retrieved)
        if vote.task != UNKNOWN_TASK and vote.confidence >= self.threshold:
            return vote.model_copy(update={"source": "hybrid:knn"})
        return self.llm(query, options, retrieved).model_copy(update={"source": "hybrid:llm"})


def compile_rule(pattern: str):
    """A gating rule, case-insensitive, on the linear-time RE2 engine; `re2.error` for what RE2 cannot run
    (lookarounds, backreferences)."""
    import re2

    return re2.compile(f"(?i){pattern}")


class RulesClassifier:
    """CCoE rule-based gating: a task matches when any of its regular expressions is found in the query.

    Deterministic and traceable; every matched task is returned (`tasks`), so the router can consult the best
    expert of each. No match is "unknown". Patterns run on RE2 (google-re2), whose matching time is linear in the
    query: a rule like `^(a+)+$` cannot freeze the service the way a backtracking engine lets it.
    """

    kind = "rules"

    def __init__(self, rules: dict[str, list[str]]):
        self.rules = {task: [compile_rule(p) for p in patterns] for task, patterns in rules.items()}

    def with_threshold(self, threshold: float) -> "RulesClassifier":
        raise ValueError("classifier kind 'rules' has no confidence threshold")

    def __call__(self, query, options, retrieved) -> TaskDecision:
        matched = [task for task, patterns in self.rules.items() if any(p.search(query) for p in patterns)]
        if not matched:
            return TaskDecision(source=self.kind)
        return TaskDecision(task=matched[0], confidence=1.0, source=self.kind, tasks=matched,
                            candidates={task: 1.0 for task in matched})


def build_classifier(kind: str, tasks: dict[str, str], model: BaseChatModel | None = None, *,
                     threshold: float = 0.6, use_examples: bool = True, min_confidence: float = 0.0,
                     rules: dict[str, list[str]] | None = None) -> TaskClassifier:
    """The classifier a config's `classifier` section describes."""
    if kind == "knn":
        return KnnClassifier(list(tasks), min_confidence)
    if kind == "rules":
        return RulesClassifier(rules or {})
    if model is None:
        raise ValueError(f"classifier kind {kind!r} needs a model")
    llm = LlmClassifier(tasks, model, use_examples, min_confidence)
    if kind == "llm":
        return llm
    if kind == "hybrid":
        return HybridClassifier(KnnClassifier(list(tasks)), llm, threshold)
    raise ValueError(f"unknown classifier kind {kind!r} (knn, llm, hybrid)")
