"""LLMRouter (ulab-uiuc): 9 models with per-query scores and prices; the full test split, the test queries not
also in train, and the quality/cost curves (`coe eval curve`) with their summary figures."""

from __future__ import annotations

from pathlib import Path

from coe_router.evaluation.curves import CurveReport, cost_curve
from coe_router.outcomes import read_llmrouter_scores, read_prices
from coe_router.evaluation.plots import plot_confusion, plot_curve
from coe_router.evaluation.prices import PER_1M, cost_matrix
from coe_router.evaluation.replay import ReplayBench
from reports.pools import PoolReport, encode, evaluate_pool
from reports.tables import (
    Figures,
    classifier_line,
    confusions,
    curve_points_table,
    curve_summary_table,
    interval_lines,
    knn_tuning_lines,
    learned_table,
    learned_tuning_line,
    per_class_table,
    router_table,
)


def curve_for(report: PoolReport) -> CurveReport:
    bench: ReplayBench = report.bench
    return cost_curve(bench, cost_matrix(bench.test, bench.prices), PER_1M)


def llmrouter_section(data: Path, encoder, cache_dir, log, figures: Figures) -> str:
    folder = data / "llmrouter-ulab"
    splits = read_llmrouter_scores(folder / "scores_with_task.jsonl")
    train, test = splits["train"], splits["test"]
    prices = read_prices(folder / "llm_candidates" / "default_llm.json", train.models)
    train_vectors = encode(train.questions, encoder, cache_dir, "encoding LLMRouter train")
    test_vectors = encode(test.questions, encoder, cache_dir, "encoding LLMRouter test")
    log("LLMRouter, full test")
    report = evaluate_pool("llmrouter", train, test, train_vectors, test_vectors, prices=prices)
    unseen = ~test.flags["also_in_train"]
    log("LLMRouter, unseen test queries")
    unseen_report = evaluate_pool("llmrouter-unseen", train, test.take(unseen), train_vectors, test_vectors[unseen],
                                  prices=prices)
    log("LLMRouter, quality/cost curves")
    curve, unseen_curve = curve_for(report), curve_for(unseen_report)
    price_text = ", ".join(f"{m} {p:g}" for m, p in sorted(prices.items(), key=lambda kv: kv[1]))
    return "\n".join([
        "## LLMRouter (ulab-uiuc): 9 models, per-query scores and prices",
        "",
        (f"{train.n:,} train / {test.n} test queries as split by the data set; 14 task labels (test covers 10). "
        "Scores are mostly 1/0 and fractional for F1, code and coverage metrics, so accuracy here is the mean "
        "score in percent. No cell is missing. Prices: the mean of input and output price per 1M tokens from "
        f"`llm_candidates/default_llm.json` ({price_text}); the data has no token counts, so `$ / 1M tok` is the "
        "average price of the models the queries went to, as if every answer used the same number of tokens."),
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
        (f"{int((~unseen).sum())} test queries also occur verbatim in train (`also_in_train`); a nearest-neighbour "
        "router finds them with similarity 1, so this table removes them."),
        "",
        router_table(unseen_report, cost=True),
        "",
        classifier_line(unseen_report),
        "",
        learned_tuning_line(report),
        "",
        "### Learned routers",
        "",
        "Fed the gold task label of each query, as the category router is.",
        "",
        learned_table({"all test queries": report, "not also in train": unseen_report}),
        "",
        *curve_lines(curve, unseen_curve, figures),
        "### Classifier per task (all test queries)",
        "",
        per_class_table(report.classifier),
        "",
        f"Most frequent confusions: {confusions(report.classifier)}.",
        "",
        figures.draw("llmrouter_confusion.png", "Confusion heatmap of the knn classifier on LLMRouter", plot_confusion,
                     report.classifier.confusion, report.classifier.labels,
                     title=f"knn classifier (k={report.classifier_k}), LLMRouter test, accuracy {report.classifier.accuracy:.1f}%"),
        "",
    ])


def curve_lines(curve: CurveReport, unseen: CurveReport, figures: Figures) -> list[str]:
    """The quality/cost section: the figure, the summary per router, every point, the intervals, the closing note."""
    weak, strong = curve.weak, curve.strong
    unseen_text = "; ".join(f"{c.router} APGR {c.apgr:.3f}, CPT(50%) "
                            + (f"{c.cpt[0].percent_of_strong:.1f}%" if c.cpt and c.cpt[0] else "not reached")
                            for c in unseen.routers)
    return [
        "### Quality vs cost (`coe eval curve`, all test queries)",
        "",
        ("Each router picks per query the model with the highest estimated score - lambda x price / max price "
        "(knn-router: its neighbourhood estimate; category / two-stage: the train accuracy of the gold / classified "
        f"task; mf-router: its predicted score for the query and its gold task), for lambda in {', '.join(f'{w:g}' for w in curve.weights)}; the knn-router keeps the settings tuned "
        f"above. Cost: the mean price ($ / 1M tokens) of the routed models. Weak model (cheapest): {weak.model} "
        f"({weak.accuracy:.2f}% at {weak.cost:.3f}); strong model (best single on train): {strong.model} "
        f"({strong.accuracy:.2f}% at {strong.cost:.3f}). APGR, CPT and the Pareto points are defined in "
        "docs/EVALUATION.md: APGR 0.5 is what mixing the weak and the strong model at random gives, 1 is the whole "
        "weak-to-strong gap recovered at the weak model's cost, above 1 the router beats the strong model within its "
        "cost. The *mix of single models* row is the pool's own envelope without any routing (how much APGR the "
        "pool gives by itself); `strong calls` is RouteLLM's form of CPT, the share of queries sent to the strong "
        "model. Intervals: bootstrap over the test queries, 2,000 resamples, 95%."),
        "",
        figures.draw("llmrouter_quality_cost.png", "Quality vs cost curves on LLMRouter", plot_curve, curve,
                     title=f"LLMRouter: quality vs cost ({curve.n} test queries, 9 models)"),
        "",
        curve_summary_table(curve),
        "",
        f"On the {unseen.n} test queries that do not occur in train: {unseen_text}.",
        "",
        "Every setting (accuracy % / cost; bold: Pareto points among all routers and single models):",
        "",
        curve_points_table(curve),
        "",
        "Differences in accuracy (points) with paired bootstrap 95% intervals:",
        "",
        interval_lines(curve),
        "",
        closing_note(curve),
        "",
    ]


ROUTER_ROLES = {"knn-router": "knn-router", "category": "task map (gold task)", "two-stage": "task map (classified task)"}


def closing_note(curve: CurveReport) -> str:
    """Each router against the best single expert: accuracy at its cost, cost at its accuracy, APGR, CPT(50%);
    then the knn-router against the best single and the task maps with their intervals."""
    strong = curve.strong

    def sentence(c) -> str:
        at_cost, matching = c.at_best_single_cost, c.matches_best_single
        accuracy = f"{at_cost.accuracy:.2f}% (lambda={at_cost.cost_weight:g})" if at_cost else "no setting"
        cost = (f"its accuracy at {100 * matching.cost / strong.cost:.0f}% of its cost (lambda={matching.cost_weight:g})"
                if matching else "its accuracy never reached")
        cpt = f"{c.cpt[0].percent_of_strong:.1f}%" if c.cpt and c.cpt[0] else "not reached"
        apgr = f"{c.apgr:.3f}" if c.apgr is not None else "-"
        return (f"{ROUTER_ROLES.get(c.router, c.router)}: {accuracy} at the best single's cost, "
                f"{cost}, APGR {apgr}, CPT(50%) {cpt}")

    intervals = "; ".join(f"{i.a} minus {i.b} {i.text()}" for i in curve.intervals
                          if i.a.startswith("knn-router") and i.a.endswith("(lambda=0)"))
    return (f"**In short (LLMRouter, {curve.n} test queries; best single expert {strong.model}, {strong.accuracy:.2f}% "
            f"at {strong.cost:.3f} $ / 1M tokens):** " + "; ".join(sentence(c) for c in curve.routers)
            + f". Paired 95% intervals (points): {intervals}.")
