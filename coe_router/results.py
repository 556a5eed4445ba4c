"""Regenerate docs/RESULTS.md: routers and classifiers replayed on the recorded data in shared/data.

    python -m coe_router.results [--out docs/RESULTS.md] [--data ../shared/data] [--seeds 5]
    coe eval report            (the same)

Every number in the file is computed here from the data, on a held-out split; every setting (classifier k,
knn-router k / weighting / prior) is chosen on the training split alone (leave-one-out or 5-fold CV).
Question embeddings are cached (~/.cache/coe-router/embeddings, keyed by text hash), so only the first run pays
for encoding (19 min on 2 CPU cores, 10 of them for the options ablation); later runs take about 1.5 minutes.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel

from .embedding_cache import encode_cached
from .evaluation import ClassifierReport, ReplayBench, ReplayResult, prepare_pool
from .leaderboard import Leaderboard, leaderboard_from_table
from .outcomes import Outcomes, read_llmrouter_scores, read_outcomes, read_prices
from .routers import KnnRouterParams
from .splits import stratified_split
from .tuning import CvScore, default_grid, tune_classifier_k, tune_knn_router

TEST_FRACTION = 0.3
PRIMARY_SEED = 0
COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class ModelInfo:
    params_b: float | None  # nominal size in billions (from the model name / model card); None if undisclosed
    open_weights: bool
    note: str = ""


# The 29 MMLU-Pro models. "Open" means the weights can be downloaded and run locally, whatever the licence.
MMLU_PRO_MODELS: dict[str, ModelInfo] = {
    "c4ai-command-r-v01": ModelInfo(35, True, "CC-BY-NC-4.0 weights"),
    "DeepSeek-Coder-V2": ModelInfo(236, True, "MoE, 21B active; DeepSeek licence"),
    "gemini-1.5-flash-002": ModelInfo(None, False, "API only"),
    "gemini-1.5-pro-002": ModelInfo(None, False, "API only"),
    "gemma-7b": ModelInfo(7, True, "nominal 7B (8.5B with embeddings); Gemma terms"),
    "jamba-1.5-large": ModelInfo(398, True, "MoE, 94B active; Jamba Open Model License"),
    "Llama-2-13b-hf": ModelInfo(13, True),
    "Llama-2-70b-hf": ModelInfo(70, True),
    "Llama-2-7b-hf": ModelInfo(7, True),
    "mathstral-7B": ModelInfo(7, True, "Apache-2.0"),
    "Meta-Llama-3-70B": ModelInfo(70, True),
    "Meta-Llama-3-8B": ModelInfo(8, True),
    "Meta-Llama-3_1-70B": ModelInfo(70, True),
    "Meta-Llama-3_1-70B-Instruct": ModelInfo(70, True),
    "Meta-Llama-3_1-8B": ModelInfo(8, True),
    "Meta-Llama-3_1-8B-Instruct": ModelInfo(8, True),
    "Mistral-7B-Instruct-v0.1": ModelInfo(7, True, "Apache-2.0"),
    "Mistral-7B-Instruct-v0.2": ModelInfo(7, True, "Apache-2.0"),
    "Mistral-7B-v0.1": ModelInfo(7, True, "Apache-2.0"),
    "Mistral-7B-v0.2-hf": ModelInfo(7, True, "Apache-2.0"),
    "Mixtral-8x7B-Instruct-v0.1": ModelInfo(46.7, True, "MoE, 12.9B active"),
    "Mixtral-8x7B-v0.1": ModelInfo(46.7, True, "MoE, 12.9B active"),
    "Phi-3-mini-4k-instruct": ModelInfo(3.8, True, "MIT"),
    "Qwen1.5-110B": ModelInfo(110, True),
    "Qwen1.5-72B-Chat": ModelInfo(72, True),
    "Qwen1.5-7B-Chat": ModelInfo(7, True),
    "Yi-34B": ModelInfo(34, True),
    "Yi-6B": ModelInfo(6, True),
    "Yi-6b-Chat": ModelInfo(6, True),
}

ROUTER_NOTES = {
    "random": "uniform random model per question (mean of 20 seeds)",
    "best-single": "the best model on train, always",
    "oracle": "any model that got the question right (ceiling)",
    "category": "gold task -> best train expert (a perfect classifier)",
    "two-stage": "knn-classified task -> best train expert (CoE-Ops pipeline)",
    "knn-router": "query-level: neighbours' recorded outcomes, shrunk to the task prior",
}


def find_data_dir(explicit: str | Path | None = None) -> Path:
    """--data, else $COE_DATA_DIR, else shared/data next to or above the repository."""
    candidates = [explicit, os.environ.get("COE_DATA_DIR")]
    root = Path(__file__).resolve().parents[1]
    candidates += [root / "shared" / "data", root.parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mmlu-pro-model-outputs").is_dir():
            return Path(candidate)
    raise FileNotFoundError("data folder not found: pass --data or set COE_DATA_DIR (it holds mmlu-pro-model-outputs/)")


class PoolReport(BaseModel):
    """Everything measured for one model pool on one split."""

    name: str
    models: list[str]
    n_train: int
    n_test: int
    results: list[ReplayResult]
    classifier: ClassifierReport
    classifier_k: int
    classifier_loo: dict[int, float]
    knn: KnnRouterParams
    knn_cv: float
    knn_top: list[CvScore]
    leaderboard: Leaderboard

    def result(self, router: str) -> ReplayResult:
        return next(r for r in self.results if r.router == router)


def best_k(loo: dict[int, float]) -> int:
    """Highest leave-one-out accuracy; ties to the smaller k."""
    return min(loo, key=lambda k: (-loo[k], k))


def evaluate_pool(name: str, train: Outcomes, test: Outcomes, train_vectors: np.ndarray, test_vectors: np.ndarray,
                  models: Sequence[str] | None = None, prices: dict[str, float] | None = None) -> PoolReport:
    """Tune on train (classifier k by leave-one-out, knn-router by 5-fold CV), then score every router on test."""
    train, test, train_rows, test_rows = prepare_pool(train, test, models, "drop")
    train_vectors, test_vectors = train_vectors[train_rows], test_vectors[test_rows]
    loo = tune_classifier_k(train_vectors, train.categories)
    k = best_k(loo)
    tuning = tune_knn_router(train.models, train_vectors, train.scores, train.categories.tolist(),
                             grid=default_grid(task_k=k), prices=prices, progress=True)
    bench = ReplayBench(train, test, train_vectors, test_vectors, prices=prices, classifier_k=k, knn_params=tuning.best)
    return PoolReport(
        name=name, models=train.models, n_train=train.n, n_test=test.n, results=bench.run_all(),
        classifier=bench.classifier_report, classifier_k=k, classifier_loo=loo, knn=tuning.best,
        knn_cv=tuning.best_accuracy, knn_top=tuning.table[:5], leaderboard=bench.leaderboard,
    )


# ---- markdown helpers --------------------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _picks(result: ReplayResult, top: int = 3) -> str:
    items = list(result.picks.items())
    text = ", ".join(f"{m} {100 * share:.0f}%" for m, share in items[:top])
    return text + (f", +{len(items) - top} more" if len(items) > top else "")


def _knn_text(params: KnnRouterParams) -> str:
    prior = "no prior" if params.prior == "none" else f"{params.prior} prior x{params.prior_strength:g}"
    weighting = params.weighting + (f" (T={params.temperature:g})" if params.weighting == "softmax" else "")
    return f"k={params.k}, {weighting}, {prior}, task k={params.task_k}"


def router_table(report: PoolReport, cost: bool = False) -> str:
    best = report.result("best-single").accuracy
    header = ["router", "accuracy %", "vs best single"] + (["$ / 1M tok"] if cost else []) + ["routed to", "what it is"]
    rows = []
    for r in report.results:
        acc = f"{r.accuracy:.2f}" + (f" ± {r.accuracy_std:.2f}" if r.accuracy_std is not None else "")
        if r.router == "two-stage":
            acc += f" (classifier {r.classifier_accuracy:.1f}%)"
        row = [f"**{r.router}**" if r.router in ("two-stage", "knn-router") else r.router, acc,
               f"{r.accuracy - best:+.2f}"]
        if cost:
            row.append(f"{r.mean_price:.3f}" if r.mean_price is not None else "")
        row += [_picks(r) if r.router != "random" else "-", ROUTER_NOTES[r.router]]
        rows.append(row)
    return _table(header, rows)


def classifier_line(report: PoolReport) -> str:
    c = report.classifier
    loo = ", ".join(f"{k}: {v:.1f}" for k, v in report.classifier_loo.items())
    return (f"knn classifier (k={report.classifier_k}, chosen by leave-one-out on train: {loo}): accuracy "
            f"**{c.accuracy:.2f}%**, macro P/R/F1 {c.macro_precision:.2f} / {c.macro_recall:.2f} / {c.macro_f1:.2f}, "
            f"weighted P/R/F1 {c.weighted_precision:.2f} / {c.weighted_recall:.2f} / {c.weighted_f1:.2f} "
            f"(n={c.n}).")


def per_class_table(report: ClassifierReport) -> str:
    rows = [[task, f"{f.precision:.1f}", f"{f.recall:.1f}", f"{f.f1:.1f}", f.support]
            for task, f in sorted(report.per_class.items(), key=lambda kv: -kv[1].f1)]
    return _table(["task", "precision", "recall", "F1", "n"], rows)


def confusions(report: ClassifierReport, top: int = 6) -> str:
    pairs = []
    for i, gold in enumerate(report.labels):
        for j, predicted in enumerate(report.labels):
            if i != j and i < len(report.confusion) and report.confusion[i][j]:
                pairs.append((report.confusion[i][j], gold, predicted))
    pairs.sort(reverse=True)
    return ", ".join(f"{g} -> {p} ({n})" for n, g, p in pairs[:top])


def leaderboard_table(board: Leaderboard) -> str:
    rows = []
    for task in board.tasks:
        ranked = board.ranking[task]
        rows.append([task, board.task_counts.get(task, ""), f"{ranked[0]} ({100 * board.accuracy[task][ranked[0]]:.1f})",
                     f"{ranked[1]} ({100 * board.accuracy[task][ranked[1]]:.1f})" if len(ranked) > 1 else ""])
    best = board.best_average
    rows.append(["*best average (eq. 8)*", sum(board.task_counts.values()),
                 f"{best} ({100 * board.overall_accuracy[best]:.1f})", ""])
    return _table(["task", "n (train)", "best expert (eq. 5), acc %", "runner-up"], rows)


def knn_tuning_lines(report: PoolReport) -> str:
    lines = [f"knn-router settings chosen by 5-fold CV on train: {_knn_text(report.knn)} "
             f"(CV accuracy {report.knn_cv:.2f}%). Next best settings:", ""]
    for row in report.knn_top[1:5]:
        lines.append(f"- {_knn_text(row.params)}: {row.accuracy:.2f}%")
    return "\n".join(lines)


# ---- sections ----------------------------------------------------------------------------------------------------

def _encode(texts: list[str], encoder, cache_dir, desc: str) -> np.ndarray:
    return encode_cached(texts, encoder, cache_dir=cache_dir, desc=desc)


def mmlu_pools() -> dict[str, tuple[list[str], str]]:
    all_models = list(MMLU_PRO_MODELS)
    open_models = [m for m, info in MMLU_PRO_MODELS.items() if info.open_weights]
    small = [m for m, info in MMLU_PRO_MODELS.items() if info.params_b is not None and info.params_b <= 8]
    return {
        "all 29 models": (all_models, "every model with recorded outputs"),
        f"open weights ({len(open_models)})": (open_models, "weights downloadable; drops the two Gemini API models"),
        f"<= 8B parameters ({len(small)})": (small, "nominal size 8B or less (runs on one consumer GPU)"),
    }


def mmlu_section(data: Path, encoder, cache_dir, seeds: int, log, ablation: bool = True) -> tuple[str, list[str]]:
    """The MMLU-Pro tables, and the summary lines (targets of the issue vs what was measured) for the header."""
    folder = data / "mmlu-pro-model-outputs"
    outcomes = read_outcomes(folder / "correctness.csv", folder / "questions.jsonl")
    unknown = [m for m in outcomes.models if m not in MMLU_PRO_MODELS]
    if unknown:
        raise ValueError(f"models without size/licence metadata in results.MMLU_PRO_MODELS: {unknown}")
    vectors = _encode(outcomes.questions, encoder, cache_dir, "encoding MMLU-Pro questions")
    train_rows, test_rows = stratified_split(outcomes.ids, outcomes.categories, TEST_FRACTION, PRIMARY_SEED)
    train, test = outcomes.take(train_rows), outcomes.take(test_rows)
    reports = {}
    for name, (models, _) in mmlu_pools().items():
        log(f"MMLU-Pro pool {name}")
        reports[name] = evaluate_pool(name, train, test, vectors[train_rows], vectors[test_rows], models)
    full = reports["all 29 models"]

    out = [
        "## MMLU-Pro: 29 models' recorded 5-shot CoT answers",
        "",
        f"{outcomes.n:,} questions, 14 categories (the task labels). Split: category-stratified, "
        f"{int(TEST_FRACTION * 100)}% test, seed {PRIMARY_SEED} (`coe eval split`), {len(train_rows):,} train / "
        f"{len(test_rows):,} test questions. Missing cells: DeepSeek-Coder-V2 was not evaluated on 1,171 questions "
        "(592 engineering, 540 chemistry), the Gemini models on 22; a pool keeps only the questions every one of its "
        "models answered (on train and on test), so all routers of a pool are scored on the same questions. This "
        "leaves few engineering and chemistry questions in the pools that contain DeepSeek-Coder-V2.",
        "",
        "Pools: " + "; ".join(f"**{n}**: {why}" for n, (_, why) in mmlu_pools().items()) + ". "
        "c4ai-command-r-v01 (CC-BY-NC), jamba-1.5-large (Jamba Open Model License) and DeepSeek-Coder-V2 (DeepSeek "
        "licence) count as open: their weights are published, with usage restrictions. Sizes are the nominal ones "
        "in the model names (gemma-7b has 8.5B parameters counting embeddings; Llama-3-8B 8.03B).",
        "",
    ]
    for name, report in reports.items():
        out += [
            f"### Pool: {name} — {report.n_test:,} test questions ({report.n_train:,} train)",
            "",
            router_table(report),
            "",
            classifier_line(report),
            "",
            knn_tuning_lines(report),
            "",
        ]
    out += [
        "### Task -> expert map of the 29-model pool (leaderboard built on train, eq. 4/5/8)",
        "",
        leaderboard_table(full.leaderboard),
        "",
        "### Classifier per category (29-model pool, test)",
        "",
        per_class_table(full.classifier),
        "",
        f"Most frequent confusions (gold -> predicted): {confusions(full.classifier)}.",
        "",
    ]
    robustness: dict[str, list[float]] = {}
    if seeds > 1:
        lines, robustness = robustness_section(outcomes, vectors, seeds, log)
        out += lines
    if ablation:
        out += options_ablation(outcomes, train_rows, test_rows, encoder, cache_dir, full, log)
    return "\n".join(out), summary_lines(full, robustness)


def summary_lines(full: PoolReport, robustness: dict[str, list[float]]) -> list[str]:
    """The issue's targets next to the measured figures (29-model pool, primary split; seed mean when computed)."""
    acc = {r.router: r.accuracy for r in full.results}
    gap = acc["two-stage"] - acc["category"]
    margin = acc["knn-router"] - acc["category"]

    def seeds(router: str) -> str:
        values = robustness.get(router)
        return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "-"

    rows = [
        ["best single", "~71.6", f"{acc['best-single']:.2f}", seeds("best-single")],
        ["category (gold task -> expert)", "~73.0", f"{acc['category']:.2f}", seeds("category")],
        ["oracle", "~94", f"{acc['oracle']:.2f}", seeds("oracle")],
        ["two-stage (knn classifier)", "within 0.5 of category", f"{acc['two-stage']:.2f} ({gap:+.2f})",
         seeds("two-stage")],
        ["knn-router", "above category", f"{acc['knn-router']:.2f} ({margin:+.2f})", seeds("knn-router")],
    ]
    n = len(next(iter(robustness.values()))) if robustness else 0
    return [
        "## Summary: MMLU-Pro, all 29 models, held-out split",
        "",
        _table(["router", "target", f"measured, seed {PRIMARY_SEED} split (%)",
                f"mean ± std over {n} splits" if n else "other splits"], rows),
        "",
        f"One test question is {100 / full.n_test:.3f} points here; the split-to-split spread in the robustness "
        "table below is the yardstick for differences between routers.",
        "",
    ]


def robustness_section(outcomes: Outcomes, vectors: np.ndarray, seeds: int, log
                       ) -> tuple[list[str], dict[str, list[float]]]:
    """The same pipeline on other split seeds: how much of a difference between routers is the split's noise."""
    rows_by_router: dict[str, list[float]] = {}
    margins, two_stage_gaps = [], []
    for seed in range(seeds):
        log(f"MMLU-Pro all 29 models, split seed {seed}")
        train_rows, test_rows = stratified_split(outcomes.ids, outcomes.categories, TEST_FRACTION, seed)
        report = evaluate_pool("all", outcomes.take(train_rows), outcomes.take(test_rows), vectors[train_rows],
                               vectors[test_rows])
        for r in report.results:
            rows_by_router.setdefault(r.router, []).append(r.accuracy)
        margins.append(report.result("knn-router").accuracy - report.result("category").accuracy)
        two_stage_gaps.append(report.result("two-stage").accuracy - report.result("category").accuracy)
    table = _table(
        ["router", "mean %", "std", "per seed"],
        [[router, f"{np.mean(v):.2f}", f"{np.std(v):.2f}", " / ".join(f"{x:.2f}" for x in v)]
         for router, v in rows_by_router.items()],
    )
    return [
        f"### Robustness: all 29 models, split seeds 0-{seeds - 1}",
        "",
        "Each seed is a fresh stratified 70/30 split, with k and the knn-router settings re-tuned on its train part.",
        "",
        table,
        "",
        f"knn-router minus category: {' / '.join(f'{m:+.2f}' for m in margins)} (mean {np.mean(margins):+.2f}; "
        f"above category on {sum(m > 0 for m in margins)} of {seeds} splits). "
        f"two-stage minus category: {' / '.join(f'{g:+.2f}' for g in two_stage_gaps)} "
        f"(within 0.5 points on {sum(abs(g) <= 0.5 for g in two_stage_gaps)} of {seeds}).",
        "",
    ], rows_by_router


def options_ablation(outcomes: Outcomes, train_rows, test_rows, encoder, cache_dir, base: PoolReport, log) -> list[str]:
    """The graph's retriever embeds the question text only (what the tables above use); embedding the answer
    options too is a one-line change whose effect is measured here, on the same split and pool."""
    log("MMLU-Pro options ablation")
    texts = [q + "\nOptions: " + " | ".join(o or []) for q, o in zip(outcomes.questions, outcomes.options)]
    vectors = _encode(texts, encoder, cache_dir, "encoding MMLU-Pro questions + options")
    report = evaluate_pool("all", outcomes.take(train_rows), outcomes.take(test_rows), vectors[train_rows],
                           vectors[test_rows])
    rows = []
    for label, r in (("question only (above)", base), ("question + options", report)):
        rows.append([label, f"{r.classifier.accuracy:.2f}", f"{r.classifier.macro_f1:.2f}",
                     f"{r.result('two-stage').accuracy:.2f}", f"{r.result('knn-router').accuracy:.2f}",
                     f"{r.result('category').accuracy:.2f}", f"{r.knn_cv:.2f}"])
    return [
        "### Ablation: embedding the options with the question (all 29 models, seed 0)",
        "",
        _table(["embedded text", "classifier acc %", "macro F1", "two-stage %", "knn-router %", "category %",
                "knn-router CV on train %"], rows),
        "",
    ]


def llmrouter_section(data: Path, encoder, cache_dir, log) -> str:
    folder = data / "llmrouter-ulab"
    splits = read_llmrouter_scores(folder / "scores_with_task.jsonl")
    train, test = splits["train"], splits["test"]
    prices = read_prices(folder / "llm_candidates" / "default_llm.json")
    prices = {m: prices[m] for m in train.models}
    train_vectors = _encode(train.questions, encoder, cache_dir, "encoding LLMRouter train")
    test_vectors = _encode(test.questions, encoder, cache_dir, "encoding LLMRouter test")
    log("LLMRouter, full test")
    report = evaluate_pool("llmrouter", train, test, train_vectors, test_vectors, prices=prices)
    unseen = ~test.flags["also_in_train"]
    log("LLMRouter, unseen test queries")
    unseen_report = evaluate_pool("llmrouter-unseen", train, test.take(unseen), train_vectors, test_vectors[unseen],
                                  prices=prices)
    bench = ReplayBench(train, test, train_vectors, test_vectors, prices=prices, classifier_k=report.classifier_k)
    sweep = []
    for weight in COST_WEIGHTS:
        bench.knn_params = report.knn.model_copy(update={"cost_weight": weight})
        result = bench.run("knn-router")
        sweep.append([f"{weight:g}", f"{result.accuracy:.2f}", f"{result.mean_price:.3f}", _picks(result)])
    price_text = ", ".join(f"{m} {p:g}" for m, p in sorted(prices.items(), key=lambda kv: kv[1]))
    return "\n".join([
        "## LLMRouter (ulab-uiuc): 9 models, per-query scores and prices",
        "",
        f"{train.n:,} train / {test.n} test queries as split by the data set; 14 task labels (test covers 10). "
        "Scores are mostly 1/0 and fractional for F1, code and coverage metrics, so accuracy here is the mean "
        "score in percent. No cell is missing. Prices: the mean of input and output price per 1M tokens from "
        f"`llm_candidates/default_llm.json` ({price_text}); the data has no token counts, so `$ / 1M tok` is the "
        "average price of the models the queries went to, as if every answer used the same number of tokens.",
        "",
        f"### All {report.n_test} test queries",
        "",
        router_table(report, cost=True),
        "",
        classifier_line(report),
        "",
        knn_tuning_lines(report),
        "",
        f"### The {unseen_report.n_test} test queries that do not also occur in train",
        "",
        f"{int((~unseen).sum())} test queries also occur verbatim in train (`also_in_train`); a nearest-neighbour "
        "router finds them with similarity 1, so this table removes them.",
        "",
        router_table(unseen_report, cost=True),
        "",
        classifier_line(unseen_report),
        "",
        "### knn-router cost weight (all test queries; settings as tuned above, utility = score - lambda * price / max price)",
        "",
        _table(["lambda", "accuracy %", "$ / 1M tok", "routed to"], sweep),
        "",
        "### Classifier per task (all test queries)",
        "",
        per_class_table(report.classifier),
        "",
        f"Most frequent confusions: {confusions(report.classifier)}.",
        "",
    ])


def devops_counts(subcategories: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Per-task test counts (per language) of the DevOps (by lifecycle stage) and AIOps leaderboards, from the
    sub-category list; the leaderboard spells LogParser as LogParsing."""
    devops: dict[str, int] = {}
    aiops: dict[str, int] = {}
    with subcategories.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            count = int(row["test_per_language"])
            if "AIOps" in row["supercategory"]:
                aiops["LogParsing" if row["name"] == "LogParser" else row["name"]] = count
            if row["supercategory"] != "OPERATE/AIOps":
                stage = row["supercategory"].split("/")[0].lower()
                devops[stage] = devops.get(stage, 0) + count
    return devops, aiops


def devops_section(data: Path) -> str:
    folder = data / "devops-eval"
    devops_counts_, aiops_counts = devops_counts(folder / "subcategories.csv")
    rows = []
    for name, counts in (("devops_zero_shot", devops_counts_), ("devops_five_shot", devops_counts_),
                         ("aiops_zero_shot", aiops_counts), ("aiops_one_shot", aiops_counts)):
        path = folder / f"leaderboard_{name}.csv"
        board = leaderboard_from_table(path, counts=counts)
        avg = _avg_column(path)
        computed = {m: 100 * board.overall_accuracy[m] for m in board.models}
        matches = [m for m in board.models if abs(computed[m] - avg[m]) <= 0.011]
        # A published AVG that equals another row's computed average was moved with the wrong row.
        swapped = [m for m in board.models if m not in matches
                   and any(abs(computed[o] - avg[m]) <= 0.011 for o in board.models if o != m)]
        check = f"{len(matches)} of {len(board.models)}" + (f" ({', '.join(swapped)}: AVG of another row)" if swapped else "")
        total = sum(board.task_counts.values())
        category = sum(board.task_counts[t] * board.accuracy[t][board.best[t]] for t in board.tasks) / total
        best = board.best_average
        experts = sorted(set(board.best.values()))
        rows.append([name, f"{best} {100 * board.overall_accuracy[best]:.2f}", f"{100 * category:.2f}",
                     f"{100 * (category - board.overall_accuracy[best]):+.2f}", ", ".join(experts), check])
    return "\n".join([
        "## DevOps-Eval: task -> expert maps from the published leaderboards (aggregate tables)",
        "",
        "The question files are not in the data (only model x category accuracy tables), so nothing can be replayed "
        "per question; `coe leaderboard build --table` still gives the task map, and the category router's accuracy "
        "follows from the table: sum over tasks of n_t x best accuracy_t / N. Counts per task come from "
        "`subcategories.csv` (per language); the last column counts the models whose published AVG the count-weighted "
        "average reproduces to 0.01 points (the rest carry the AVG of a neighbouring row: a transcription slip in "
        "the published table, so eq. 8 is computed from the per-task columns, not read from AVG).",
        "",
        _table(["leaderboard", "best average (eq. 8) %", "category router %", "gain", "experts used", "published AVG reproduced"], rows),
        "",
    ])


def _avg_column(path: Path) -> dict[str, float]:
    with path.open(encoding="utf-8") as handle:
        return {row["ModelName"]: float(row["AVG"]) for row in csv.DictReader(handle)}


def generate_results(out: str | Path = "docs/RESULTS.md", *, data_dir: str | Path | None = None,
                     cache_dir: str | None = None, seeds: int = 5, ablation: bool = True, encoder=None,
                     progress: bool = True) -> Path:
    """Compute every table and write the markdown file; returns its path."""
    started = time.perf_counter()
    data = find_data_dir(data_dir)

    def log(message: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - started:6.0f}s] {message}", file=sys.stderr)

    if encoder is None:
        from .embedding_cache import LazyEncoder

        encoder = LazyEncoder()
    mmlu, summary = mmlu_section(data, encoder, cache_dir, seeds, log, ablation)
    sections = [mmlu, llmrouter_section(data, encoder, cache_dir, log), devops_section(data)]
    elapsed = time.perf_counter() - started
    header = "\n".join([
        "# Routing results on recorded data",
        "",
        "Generated by `python -m coe_router.results` (same as `coe eval report`) from the files in `shared/data`; "
        "do not edit by hand. Accuracy is the mean recorded score of the model each test question was routed to "
        "(no model runs). All settings are chosen on the training split (classifier k by leave-one-out, "
        "knn-router k / weighting / prior by 5-fold cross-validation); the test split is used once. Embeddings: "
        "all-MiniLM-L6-v2 of the question text, cached by text hash.",
        "",
        "Routers: " + "; ".join(f"**{name}**: {text}" for name, text in ROUTER_NOTES.items()) + ".",
        "",
        f"This run took {elapsed / 60:.1f} min. With the embedding cache warm a run takes about 1.5 min on 2 CPU "
        "cores; a cold cache adds the encoding (measured: 4 min for the MMLU-Pro questions, 10 min for questions + "
        "options of the ablation, skip it with `--no-ablation`, 3 min for LLMRouter; 19 min in all).",
        "",
    ])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(summary) + "\n" + "\n".join(sections), encoding="utf-8")
    log(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coe_router.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--cache-dir")
    parser.add_argument("--seeds", type=int, default=5, help="split seeds of the robustness table (1 skips it)")
    parser.add_argument("--no-ablation", action="store_true",
                        help="skip the question+options embedding ablation (saves ~10 min of encoding on a cold cache)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    generate_results(args.out, data_dir=args.data, cache_dir=args.cache_dir, seeds=args.seeds,
                     ablation=not args.no_ablation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
