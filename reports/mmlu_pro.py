"""MMLU-Pro: 29 models' recorded 5-shot CoT answers. Three pools (all, open weights, <= 8B), the task -> expert
map, the classifier per category, robustness over split seeds and the question+options embedding ablation.

The models' size and licence come from mmlu_pro_models.csv next to this file (one row per model: `params_b`, the
nominal size in billions, empty if undisclosed; `open_weights`, yes when the weights can be downloaded and run
locally, whatever the licence; `note`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from coe_router.outcomes import Outcomes, read_outcomes
from coe_router.evaluation.curves import cost_curve
from coe_router.evaluation.plots import plot_confusion, plot_curve, plot_radar
from coe_router.evaluation.prices import cost_matrix
from coe_router.evaluation.replay import ReplayBench, pool_union, prepare_pool
from coe_router.evaluation.splits import stratified_split
from reports.pools import PRIMARY_SEED, TEST_FRACTION, PoolReport, encode, evaluate_pool
from reports.tables import (
    Figures,
    classifier_line,
    confusions,
    curve_summary_table,
    knn_tuning_lines,
    learned_table,
    learned_tuning_line,
    leaderboard_table,
    per_class_table,
    router_table,
    table,
)

MODELS_CSV = Path(__file__).with_name("mmlu_pro_models.csv")


@dataclass(frozen=True)
class ModelInfo:
    params_b: float | None  # nominal size in billions (from the model name / model card); None if undisclosed
    open_weights: bool
    note: str = ""


@cache
def mmlu_pro_models(path: Path = MODELS_CSV) -> dict[str, ModelInfo]:
    """The 29 MMLU-Pro models, in file order."""
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["model"]: ModelInfo(float(row["params_b"]) if row["params_b"].strip() else None,
                                        row["open_weights"].strip().lower() in ("yes", "true", "1"),
                                        row.get("note") or "")
                for row in csv.DictReader(handle)}


def mmlu_pools() -> dict[str, tuple[list[str], str]]:
    models = mmlu_pro_models()
    all_models = list(models)
    open_models = [m for m, info in models.items() if info.open_weights]
    small = [m for m, info in models.items() if info.params_b is not None and info.params_b <= 8]
    return {
        "all 29 models": (all_models, "every model with recorded outputs"),
        f"open weights ({len(open_models)})": (open_models, "weights downloadable; drops the two Gemini API models"),
        f"<= 8B parameters ({len(small)})": (small, "nominal size 8B or less (runs on one consumer GPU)"),
    }


def split_rows(outcomes: Outcomes, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split of `coe eval split`: stratified by category, duplicate question texts on one side."""
    return stratified_split(outcomes.ids, outcomes.categories, TEST_FRACTION, seed, outcomes.questions)


def fixed_questions(outcomes: Outcomes, train_rows: np.ndarray, test_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the split that every model of every pool answered: one question set for all pools."""
    union = pool_union({name: models for name, (models, _) in mmlu_pools().items()})
    _, _, keep_train, keep_test = prepare_pool(outcomes.take(train_rows), outcomes.take(test_rows), union)
    return train_rows[keep_train], test_rows[keep_test]


def mmlu_section(data: Path, encoder, cache_dir, seeds: int, log, figures: Figures,
                 ablation: bool = True) -> tuple[str, list[str]]:
    """The MMLU-Pro tables, and the summary lines (targets of the issue vs what was measured) for the header."""
    folder = data / "mmlu-pro-model-outputs"
    outcomes = read_outcomes(folder / "correctness.csv", folder / "questions.jsonl")
    unknown = [m for m in outcomes.models if m not in mmlu_pro_models()]
    if unknown:
        raise ValueError(f"models without size/licence metadata in {MODELS_CSV.name}: {unknown}")
    vectors = encode(outcomes.questions, encoder, cache_dir, "encoding MMLU-Pro questions")
    split_train, split_test = split_rows(outcomes, PRIMARY_SEED)
    train_rows, test_rows = fixed_questions(outcomes, split_train, split_test)
    train, test = outcomes.take(train_rows), outcomes.take(test_rows)
    reports = {}
    for name, (models, _) in mmlu_pools().items():
        log(f"MMLU-Pro pool {name}")
        reports[name] = evaluate_pool(name, train, test, vectors[train_rows], vectors[test_rows], models)
    full = reports["all 29 models"]

    out = [
        "## MMLU-Pro: 29 models' recorded 5-shot CoT answers",
        "",
        (f"{outcomes.n:,} questions, 14 categories (the task labels). Split: category-stratified, "
        f"{int(TEST_FRACTION * 100)}% test, seed {PRIMARY_SEED} (`coe eval split`: the {_duplicates(outcomes)} "
        f"questions whose text occurs more than once stay on one side), {len(split_train):,} train / "
        f"{len(split_test):,} test questions. Missing cells: DeepSeek-Coder-V2 was not evaluated on 1,171 questions "
        "(592 engineering, 540 chemistry), the Gemini models on 22; every pool is scored on one fixed question set, "
        f"the questions all {len(outcomes.models)} models answered ({len(train_rows):,} train / {len(test_rows):,} "
        "test), so pools and routers are compared on the same questions. This leaves few engineering and chemistry "
        "questions."),
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
            learned_tuning_line(report),
            "",
        ]
    out += size_curve_lines(reports["<= 8B parameters (14)"], figures)
    out += [
        "### Learned routers on the three pools",
        "",
        ("Fed the gold task, as the category router is. The learned-router's gain over the knn-router comes from "
         "shrinking the neighbourhood vote to the gold task's accuracy by a CV-chosen pseudo-count; where CV keeps "
         "blend 0 the network adds nothing."),
        "",
        learned_table(reports),
        "",
        "### Task -> expert map of the 29-model pool (leaderboard built on train, eq. 4/5/8)",
        "",
        leaderboard_table(full.leaderboard),
        "",
        figures.draw("mmlu_pro_radar.png", "Capability radar: per-category train accuracy of the best models",
                     plot_radar, full.leaderboard, title="MMLU-Pro capability radar (train split, 29-model pool)"),
        "",
        "### Classifier per category (29-model pool, test)",
        "",
        per_class_table(full.classifier),
        "",
        figures.draw("mmlu_pro_confusion.png", "Confusion heatmap of the knn classifier", plot_confusion,
                     full.classifier.confusion, full.classifier.labels,
                     title=f"knn classifier (k={full.classifier_k}), MMLU-Pro test, accuracy {full.classifier.accuracy:.1f}%"),
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


SIZE_UNIT = "B parameters / query"


def size_curve_lines(report: PoolReport, figures: Figures) -> list[str]:
    """Quality vs compute on the <= 8B pool: MMLU-Pro has no prices, so each model's nominal parameter count (all
    14 are dense) stands in for the cost of an answer; the routers trade score for it as for dollars."""
    bench = report.bench
    sizes = {m: mmlu_pro_models()[m].params_b for m in bench.models}
    sized = ReplayBench(bench.train, bench.test, bench.train_vectors, bench.test_vectors, prices=sizes,
                        classifier_k=bench.classifier_k, knn_params=bench.knn_params)
    curve = cost_curve(sized, cost_matrix(sized.test, sizes), SIZE_UNIT)
    weak, strong = curve.weak, curve.strong
    return [
        "### Quality vs compute on the <= 8B pool (`coe eval curve`, parameter count as the cost)",
        "",
        ("MMLU-Pro records no prices or token counts, so the cost of an answer here is the model's nominal size in "
         f"billions of parameters (compute per token grows with it; all 14 models are dense), from {MODELS_CSV.name}. "
         f"Weak model (smallest): {weak.model} ({weak.accuracy:.2f}% at {weak.cost:g}B); strong model (best single "
         f"on train): {strong.model} ({strong.accuracy:.2f}% at {strong.cost:g}B). Same sweep, summaries and "
         f"intervals as the LLMRouter curve below. The weak-to-strong gap is only "
         f"{strong.accuracy - weak.accuracy:.2f} points, so APGR and CPT, ratios to it, have wide intervals; the "
         "last two columns (accuracy at the strong model's compute, compute at its accuracy) read directly."),
        "",
        figures.draw("mmlu_pro_small_quality_compute.png", "Quality vs compute on the <= 8B MMLU-Pro pool",
                     plot_curve, curve, title=f"MMLU-Pro <= 8B: quality vs parameters ({curve.n} test questions)"),
        "",
        curve_summary_table(curve),
        "",
    ]


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
        ["learned-router (gold task)", "not below category; above knn-router",
         f"{acc['learned-router']:.2f} ({acc['learned-router'] - acc['category']:+.2f})", seeds("learned-router")],
        ["mf-router (gold task)", "-", f"{acc['mf-router']:.2f} ({acc['mf-router'] - acc['category']:+.2f})",
         seeds("mf-router")],
    ]
    n = len(next(iter(robustness.values()))) if robustness else 0
    return [
        "## Summary: MMLU-Pro, all 29 models, held-out split",
        "",
        table(["router", "target", f"measured, seed {PRIMARY_SEED} split (%)",
               f"mean ± std over {n} splits" if n else "other splits"], rows),
        "",
        (f"One test question is {100 / full.n_test:.3f} points here; the split-to-split spread in the robustness "
        "table below is the yardstick for differences between routers."),
        "",
    ]


def robustness_section(outcomes: Outcomes, vectors: np.ndarray, seeds: int, log
                       ) -> tuple[list[str], dict[str, list[float]]]:
    """The same pipeline on other split seeds: how much of a difference between routers is the split's noise."""
    rows_by_router: dict[str, list[float]] = {}
    two_stage_gaps = []
    for seed in range(seeds):
        log(f"MMLU-Pro all 29 models, split seed {seed}")
        train_rows, test_rows = split_rows(outcomes, seed)
        report = evaluate_pool("all", outcomes.take(train_rows), outcomes.take(test_rows), vectors[train_rows],
                               vectors[test_rows])
        for r in report.results:
            rows_by_router.setdefault(r.router, []).append(r.accuracy)
        two_stage_gaps.append(report.result("two-stage").accuracy - report.result("category").accuracy)
    seeds_table = table(
        ["router", "mean %", "std", "per seed"],
        [[router, f"{np.mean(v):.2f}", f"{np.std(v):.2f}", " / ".join(f"{x:.2f}" for x in v)]
         for router, v in rows_by_router.items()],
    )
    return [
        f"### Robustness: all 29 models, split seeds 0-{seeds - 1}",
        "",
        ("Each seed is a fresh stratified 70/30 split (duplicates kept together), with k and the knn-router settings "
        "re-tuned on its train part."),
        "",
        seeds_table,
        "",
        (" ".join(f"{router} minus category: {' / '.join(f'{m:+.2f}' for m in gaps)} (mean {np.mean(gaps):+.2f}; "
                 f"above category on {sum(m > 0 for m in gaps)} of {seeds} splits)."
                  for router, gaps in _margins(rows_by_router).items()) + " "
        f"two-stage minus category: {' / '.join(f'{g:+.2f}' for g in two_stage_gaps)} "
        f"(within 0.5 points on {sum(abs(g) <= 0.5 for g in two_stage_gaps)} of {seeds})."),
        "",
    ], rows_by_router


def _margins(rows_by_router: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each query-level router's accuracy minus the category router's, split by split."""
    category = rows_by_router["category"]
    return {router: [a - c for a, c in zip(rows_by_router[router], category)]
            for router in ("knn-router", "learned-router", "mf-router") if router in rows_by_router}


def _duplicates(outcomes: Outcomes) -> int:
    from coe_router.evaluation.splits import duplicate_groups

    groups = duplicate_groups(outcomes.questions, outcomes.n)
    return int((np.bincount(groups)[groups] > 1).sum())


def options_ablation(outcomes: Outcomes, train_rows, test_rows, encoder, cache_dir, base: PoolReport, log) -> list[str]:
    """The graph's retriever embeds the question text only (what the tables above use); embedding the answer
    options too is a one-line change whose effect is measured here, on the same split and pool."""
    log("MMLU-Pro options ablation")
    texts = [q + "\nOptions: " + " | ".join(o or []) for q, o in zip(outcomes.questions, outcomes.options)]
    vectors = encode(texts, encoder, cache_dir, "encoding MMLU-Pro questions + options")
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
        table(["embedded text", "classifier acc %", "macro F1", "two-stage %", "knn-router %", "category %",
               "knn-router CV on train %"], rows),
        "",
    ]
