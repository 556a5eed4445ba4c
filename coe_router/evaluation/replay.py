"""Offline evaluation: how well a classifier finds the task, and how well a router does by replaying recorded answers.

Routing accuracy is computed from recorded outcomes (no model runs): a question routed to model m scores
`scores[q, m]`. Classification is scored separately from routing (CoE-Ops Tables VII-VIII vs III-X), because a
misclassified question routed to an expert that also answers it well costs nothing.

Missing cells (a model not evaluated on a question) follow one policy for train and test alike, `drop` by default:
only questions every model of the pool answered are used, so every router and baseline is scored on the same
questions (see outcomes.MissingPolicy; `zero` counts a missing answer as wrong instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from coe_router.defaults import UNKNOWN_TASK
from coe_router.evaluation import DEFAULT_CLASSIFIER_K
from coe_router.evaluation.bootstrap import Interval, paired_bootstrap
from coe_router.evaluation.leaderboard import Leaderboard, build_leaderboard
from coe_router.outcomes import MissingPolicy, Outcomes
from coe_router.evaluation.replay_routers import BestSingleRouter, RandomRouter, TaskMapRouter, oracle_route
from coe_router.retrieval.neighbours import top_k
from coe_router.routing.classifiers import KnnClassifier, TaskClassifier
from coe_router.routing.learned_router import LearnedRouterParams
from coe_router.routing.mf_router import MatrixFactorizationParams
from coe_router.routing.query_router import KnnRouter, KnnRouterParams, price_vector
from coe_router.schema import RetrievedExample, TaskDecision

ROUTERS = ("random", "best-single", "oracle", "category", "two-stage", "knn-router")
EXTRA_ROUTERS = ("learned-router", "mf-router")
"""Routers run only when named (`--router learned-router,mf-router`): they train networks (seconds to a minute).
Like the category router they are fed each test question's gold task (a labelled benchmark names it)."""
BASELINES = ("best-single", "category")
"""Every router's accuracy difference to these gets a paired bootstrap interval (ReplayResult.differences)."""


class ClassReport(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class ClassifierReport(BaseModel):
    """Accuracy, macro and weighted precision/recall/F1 (percent), per-class figures and the confusion matrix
    (rows: gold task, columns: predicted task, in `labels` order; "unknown" is a column when it was predicted)."""

    classifier: str
    k: int | None = None
    n: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    unknown: int = Field(0, description="questions classified as 'unknown'")
    labels: list[str]
    per_class: dict[str, ClassReport]
    confusion: list[list[int]]


def classification_report(gold: Sequence[str], predicted: Sequence[str], *, classifier: str = "",
                          k: int | None = None) -> ClassifierReport:
    """Figures as in CoE-Ops Tables VII-VIII; macro averages are over the gold tasks only, so predicting
    "unknown" lowers recall without adding a zero-precision class of its own."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    gold, predicted = [str(g) for g in gold], [str(p) for p in predicted]
    tasks = sorted(set(gold))
    labels = tasks + sorted(set(predicted) - set(tasks))
    per = precision_recall_fscore_support(gold, predicted, labels=tasks, zero_division=0)
    macro = precision_recall_fscore_support(gold, predicted, labels=tasks, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(gold, predicted, labels=tasks, average="weighted", zero_division=0)
    pct = lambda v: round(float(v) * 100, 2)  # noqa: E731
    return ClassifierReport(
        classifier=classifier, k=k, n=len(gold),
        accuracy=pct(np.mean([g == p for g, p in zip(gold, predicted)])),
        macro_precision=pct(macro[0]), macro_recall=pct(macro[1]), macro_f1=pct(macro[2]),
        weighted_precision=pct(weighted[0]), weighted_recall=pct(weighted[1]), weighted_f1=pct(weighted[2]),
        unknown=sum(p == UNKNOWN_TASK for p in predicted),
        labels=labels,
        per_class={t: ClassReport(precision=pct(per[0][i]), recall=pct(per[1][i]), f1=pct(per[2][i]),
                                  support=int(per[3][i])) for i, t in enumerate(tasks)},
        confusion=confusion_matrix(gold, predicted, labels=labels).tolist(),
    )


def retrieve(train_vectors: np.ndarray, train_tasks: Sequence[str], test_vectors: np.ndarray, k: int,
             train_questions: Sequence[str] | None = None, train_ids: Sequence[str] | None = None
             ) -> list[list[RetrievedExample]]:
    """Each test question's k nearest training questions as RetrievedExample (what the graph's retriever returns),
    found with one matrix product per batch instead of one Chroma query per question."""
    idx, sims = top_k(test_vectors, train_vectors, k)
    return [
        [RetrievedExample(id=str(train_ids[j]) if train_ids is not None else str(j),
                          question=train_questions[j] if train_questions is not None else "",
                          task=str(train_tasks[j]), score=round(float(s), 6))
         for j, s in zip(row, row_sims)]
        for row, row_sims in zip(idx, sims)
    ]


def classify(classifier: TaskClassifier, questions: Sequence[str], retrieved: Sequence[Sequence[RetrievedExample]],
             options: Sequence[Sequence[str] | None] | None = None, progress: bool = False) -> list[TaskDecision]:
    """The project's classifier on every question (knn: instant; llm/hybrid: one model call per question)."""
    from tqdm import tqdm

    options = options or [None] * len(questions)
    return [classifier(q, o, r) for q, o, r in tqdm(list(zip(questions, options, retrieved)), desc=f"classifying ({classifier.kind})",
                                                    unit="q", disable=not progress, leave=False)]


class ReplayResult(BaseModel):
    """One router's figures on the test questions. `accuracy` is the mean recorded score of the routed model in
    percent (plain accuracy for 1/0 outcomes). `mean_price` is the average price per 1M tokens of the models the
    questions went to: the data has no token counts, so it compares routers as if every answer used as many tokens.
    `mean_cost` is the mean recorded cost per query (dollars) when the outcomes carry per-query costs.
    `differences`: this router minus each baseline (BASELINES), in points, with a paired bootstrap 95% interval."""

    router: str
    n: int
    models: int
    accuracy: float
    accuracy_std: float | None = Field(None, description="standard deviation over seeds (random router)")
    classifier_accuracy: float | None = Field(None, description="task accuracy of the classifier (two-stage)")
    mean_price: float | None = None
    mean_cost: float | None = None
    differences: list[Interval] = Field(default_factory=list)
    picks: dict[str, float] = Field(default_factory=dict, description="share of questions routed to each model")
    per_task: dict[str, float] = Field(default_factory=dict, description="accuracy (percent) on each task's questions")
    macro_accuracy: float | None = Field(None, description="mean of per_task: every task weighs the same, as papers "
                                                           "report")
    params: dict = Field(default_factory=dict)


def pick_shares(models: Sequence[str], choices: np.ndarray) -> dict[str, float]:
    """Share of the questions routed to each model, most used first (models never chosen left out)."""
    counts = np.bincount(choices, minlength=len(models)) / len(choices)
    return {models[i]: round(float(c), 4) for i, c in sorted(enumerate(counts), key=lambda kv: -kv[1]) if c > 0}


@dataclass
class ReplayBench:
    """Train and test outcomes of one model pool (missing cells already resolved), their question vectors, and
    everything derived from train that routers share: the leaderboard, the classifier's predictions."""

    train: Outcomes
    test: Outcomes
    train_vectors: np.ndarray | None = None
    test_vectors: np.ndarray | None = None
    prices: dict[str, float] | None = None
    classifier_k: int = DEFAULT_CLASSIFIER_K
    knn_params: KnnRouterParams = field(default_factory=KnnRouterParams)
    random_seeds: int = 20
    classifier: TaskClassifier | None = None
    learned_params: LearnedRouterParams = field(default_factory=LearnedRouterParams)
    mf_params: MatrixFactorizationParams = field(default_factory=MatrixFactorizationParams)

    def __post_init__(self) -> None:
        if self.train.models != self.test.models:
            raise ValueError(f"train and test have different models: {self.train.models} vs {self.test.models}")
        for name, part in (("train", self.train), ("test", self.test)):
            if np.isnan(part.scores).any():
                raise ValueError(f"{name} outcomes still have missing cells; call Outcomes.resolve_missing first")
            if part.n == 0:
                raise ValueError(f"no {name} questions left for this model pool")
        self.price_array = price_vector(self.models, self.prices)
        self.achieved: dict[str, np.ndarray] = {}  # router -> its per-question score, for paired intervals
        self.choices: dict[str, np.ndarray] = {}  # router -> the model index it picked per question (--picks)

    @property
    def models(self) -> list[str]:
        return self.train.models

    @cached_property
    def leaderboard(self) -> Leaderboard:
        return build_leaderboard(self.train, prices=self.prices, source="train split")

    @cached_property
    def decisions(self) -> list[TaskDecision]:
        """The classifier's decision for every test question (the knn classifier unless one was given)."""
        self._need_vectors("two-stage")
        classifier = self.classifier or KnnClassifier(self.train.tasks)
        retrieved = retrieve(self.train_vectors, self.train.categories, self.test_vectors, self.classifier_k,
                             self.train.questions, self.train.ids)
        return classify(classifier, self.test.questions, retrieved, self.test.options or None,
                        progress=classifier.kind != "knn")

    @cached_property
    def classifier_report(self) -> ClassifierReport:
        kind = (self.classifier or KnnClassifier([])).kind
        return classification_report(self.test.categories, [d.task for d in self.decisions], classifier=kind,
                                     k=self.classifier_k)

    def knn_router(self, cost_weight: float | None = None, router: str = "knn-router") -> KnnRouter:
        """The knn-router on the training memory with the bench's settings; `cost_weight` replaces theirs (the
        curves sweep it from 0)."""
        self._need_vectors(router)
        params = self.knn_params if cost_weight is None else self.knn_params.model_copy(update={"cost_weight": cost_weight})
        return KnnRouter(self.models, self.train_vectors, self.train.scores, self.train.categories.tolist(), params,
                         self.prices)

    @cached_property
    def mf_router(self):
        """The matrix-factorisation router trained on the training split (once: replay and the curves share it)."""
        from coe_router.routing.mf_router import MatrixFactorizationRouter

        self._need_vectors("mf-router")
        return MatrixFactorizationRouter(self.models, self.train_vectors, self.train.scores,
                                         self.train.categories.tolist(), self.mf_params, self.prices)

    def _need_vectors(self, router: str) -> None:
        if self.train_vectors is None or self.test_vectors is None:
            raise ValueError(f"router {router!r} needs question embeddings")

    def _result(self, name: str, choices: np.ndarray, **extra) -> ReplayResult:
        achieved = self.test.scores[np.arange(self.test.n), choices]
        picks = pick_shares(self.models, choices)
        price = None if self.price_array is None else round(float(self.price_array[choices].mean()), 4)
        costs = self.test.costs
        cost = None if costs is None else round(float(costs[np.arange(self.test.n), choices].mean()), 6)
        self.achieved[name] = achieved
        self.choices.setdefault(name, choices)
        per_task, macro = self.per_task(achieved)
        return ReplayResult(router=name, n=self.test.n, models=len(self.models), accuracy=round(float(achieved.mean() * 100), 2),
                            mean_price=price, mean_cost=cost, picks=picks, per_task=per_task, macro_accuracy=macro,
                            **extra)

    def per_task(self, achieved: np.ndarray) -> tuple[dict[str, float], float]:
        """Accuracy per gold task of the test questions (percent) and their unweighted mean."""
        categories = np.asarray(self.test.categories)
        per_task = {str(task): round(float(achieved[categories == task].mean() * 100), 2)
                    for task in sorted(set(categories.tolist()))}
        return per_task, round(float(np.mean(list(per_task.values()))), 2)

    def picks_rows(self, pool: str = "") -> list[dict]:
        """One row per (question, router that ran): the model it picked and the score that model recorded."""
        rows = []
        for router, choices in self.choices.items():
            for i, choice in enumerate(choices.tolist()):
                rows.append({"pool": pool, "question_id": str(self.test.ids[i]), "category": str(self.test.categories[i]),
                             "router": router, "model": self.models[choice],
                             "score": round(float(self.test.scores[i, choice]), 6)})
        return rows

    def run(self, router: str) -> ReplayResult:
        if router == "random":
            return self._random()
        if router == "best-single":
            return self._result(router, BestSingleRouter.fit(self.models, self.train.scores, self.prices).route(self.test.n))
        if router == "oracle":
            return self._result(router, oracle_route(self.test.scores, self.price_array, self.train.scores.mean(axis=0)))
        if router == "category":
            return self._result(router, TaskMapRouter(self.models, self.leaderboard).route(self.test.categories))
        if router == "two-stage":
            tasks = [d.task for d in self.decisions]
            return self._result(router, TaskMapRouter(self.models, self.leaderboard).route(tasks),
                                classifier_accuracy=self.classifier_report.accuracy,
                                params={"classifier": self.classifier_report.classifier, "k": self.classifier_k})
        if router == "knn-router":
            return self._result(router, self.knn_router().route(self.test_vectors), params=self.knn_params.model_dump())
        if router == "learned-router":
            return self._learned()
        if router == "mf-router":
            return self._matrix_factorization()
        raise ValueError(f"unknown router {router!r} ({', '.join(ROUTERS + EXTRA_ROUTERS)})")

    def _learned(self) -> ReplayResult:
        """The stacked learned router: the known-task prior's strength and the blend chosen by 5-fold CV on
        train (blend 0 is the knn estimate shrunk to the gold task's accuracy)."""
        from coe_router.routing.learned_router import LearnedRouter, tune_learned_router

        self._need_vectors("learned-router")
        tasks = self.train.categories.tolist()
        tuning = tune_learned_router(self.models, self.train_vectors, self.train.scores, tasks,
                                     knn_params=self.knn_params, params=self.learned_params, prices=self.prices)
        params = self.learned_params.model_copy(update={"blend": tuning.blend,
                                                        "task_prior_strength": tuning.task_prior_strength})
        router = LearnedRouter(self.models, self.train_vectors, self.train.scores, tasks, self.knn_params, params,
                               self.prices)
        return self._result("learned-router", router.route(self.test_vectors, self.test.categories.tolist()),
                            params={**params.model_dump(), **tuning.model_dump(exclude={"blend", "task_prior_strength"})})

    def _matrix_factorization(self) -> ReplayResult:
        return self._result("mf-router", self.mf_router.route(self.test_vectors, self.test.categories.tolist()),
                            params=self.mf_params.model_dump())

    def _random(self) -> ReplayResult:
        """Mean over seeds; the std shows how far one random draw can land from it."""
        runs, achieved = [], []
        for seed in range(self.random_seeds):
            runs.append(self._result("random", RandomRouter(self.models, seed).route(self.test.n)))
            achieved.append(self.achieved["random"])
        self.achieved["random"] = np.mean(achieved, axis=0)
        accuracies = [r.accuracy for r in runs]
        prices = [r.mean_price for r in runs if r.mean_price is not None]
        costs = [r.mean_cost for r in runs if r.mean_cost is not None]
        per_task, macro = self.per_task(self.achieved["random"])
        return ReplayResult(router="random", n=self.test.n, models=len(self.models),
                            accuracy=round(float(np.mean(accuracies)), 2), accuracy_std=round(float(np.std(accuracies)), 2),
                            mean_price=round(float(np.mean(prices)), 4) if prices else None,
                            mean_cost=round(float(np.mean(costs)), 6) if costs else None,
                            per_task=per_task, macro_accuracy=macro, params={"seeds": self.random_seeds})

    def run_all(self, routers: Sequence[str] = ROUTERS, baselines: Sequence[str] = BASELINES) -> list[ReplayResult]:
        """Every router, then each one's paired bootstrap interval against the baselines that also ran."""
        results = [self.run(router) for router in routers]
        for result in results:
            result.differences = [self.difference(result.router, base) for base in baselines
                                  if base in self.achieved and base != result.router]
        return results

    def difference(self, a: str, b: str) -> Interval:
        """Accuracy of router `a` minus router `b` (both already run), points, paired bootstrap 95% interval."""
        return paired_bootstrap(self.achieved[a], self.achieved[b], names=(a, b))


def parse_pools(specs: Sequence[str], models: Sequence[str]) -> dict[str, list[str]]:
    """`name=a,b,c` (or `name=*` for every model) -> {name: models}, in the order given; unknown models are errors."""
    pools: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        names = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name.strip() or not names:
            raise ValueError(f"a pool is NAME=model,model,... or NAME=*, got {spec!r}")
        names = list(models) if names == ["*"] else names
        unknown = [m for m in names if m not in models]
        if unknown:
            raise ValueError(f"pool {name.strip()!r}: unknown model(s) {unknown}; the outcomes have {list(models)}")
        pools[name.strip()] = names
    return pools


def pool_union(pools: dict[str, list[str]]) -> list[str]:
    """Every model of any pool, first-seen order: one fixed question set for all pools is the questions all of
    these models answered (prepare_pool with this union), so pools are compared on the same questions."""
    return list(dict.fromkeys(m for members in pools.values() for m in members))


def prepare_pool(train: Outcomes, test: Outcomes, models: Sequence[str] | None = None,
                 missing: MissingPolicy = "drop") -> tuple[Outcomes, Outcomes, np.ndarray, np.ndarray]:
    """Restrict both splits to a model pool and resolve its missing cells; also returns the kept row indices so
    vectors computed once for the full splits can be subset the same way."""
    if models:
        train, test = train.select_models(models), test.select_models(models)
    rows = []
    for part in (train, test):
        rows.append(np.flatnonzero(part.complete_mask()) if missing == "drop" else np.arange(part.n))
    return train.resolve_missing(missing), test.resolve_missing(missing), rows[0], rows[1]
