"""LLMRouter (ulab-uiuc): 9 models with per-query scores and prices; the full test split, the test queries not
also in train, and the knn-router's cost-weight sweep."""

from __future__ import annotations

from pathlib import Path

from coe_router.evaluation.outcomes import read_llmrouter_scores, read_prices
from coe_router.evaluation.replay import ReplayBench
from reports.pools import encode, evaluate_pool
from reports.tables import classifier_line, confusions, knn_tuning_lines, per_class_table, picks, router_table, table

COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def llmrouter_section(data: Path, encoder, cache_dir, log) -> str:
    folder = data / "llmrouter-ulab"
    splits = read_llmrouter_scores(folder / "scores_with_task.jsonl")
    train, test = splits["train"], splits["test"]
    prices = read_prices(folder / "llm_candidates" / "default_llm.json")
    prices = {m: prices[m] for m in train.models}
    train_vectors = encode(train.questions, encoder, cache_dir, "encoding LLMRouter train")
    test_vectors = encode(test.questions, encoder, cache_dir, "encoding LLMRouter test")
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
        sweep.append([f"{weight:g}", f"{result.accuracy:.2f}", f"{result.mean_price:.3f}", picks(result)])
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
        "### knn-router cost weight (all test queries; settings as tuned above, utility = score - lambda * price / max price)",
        "",
        table(["lambda", "accuracy %", "$ / 1M tok", "routed to"], sweep),
        "",
        "### Classifier per task (all test queries)",
        "",
        per_class_table(report.classifier),
        "",
        f"Most frequent confusions: {confusions(report.classifier)}.",
        "",
    ])
