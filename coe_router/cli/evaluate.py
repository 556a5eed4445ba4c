"""`coe eval split|classifier|replay|import-llmrouter`: offline evaluation of classifiers and routers on
recorded data (no model runs, except the llm/hybrid classifiers).

Every command that prints figures has `--json` for one machine-readable object on stdout; progress bars go to
stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coe_router.cli.common import print_json, split_list


def get_encoder():
    """The MiniLM encoder, loaded on first cache miss (tests replace this function with a fake)."""
    from coe_router.evaluation.embedding_cache import LazyEncoder

    return LazyEncoder()


def _split(args: argparse.Namespace) -> int:
    from coe_router.evaluation.outcomes import read_outcomes
    from coe_router.evaluation.splits import write_split

    paths = write_split(read_outcomes(args.outcomes, args.questions), args.out, args.test_fraction, args.seed)
    print_json({k: str(v) for k, v in paths.items()})
    return 0


def _import_llmrouter(args: argparse.Namespace) -> int:
    """LLMRouter's scores_with_task.jsonl -> the questions.jsonl + correctness.csv pair per split (+ prices.json)."""
    from coe_router.evaluation.outcomes import read_llmrouter_scores, read_prices, write_outcomes

    out = Path(args.out)
    written = {}
    for split, outcomes in read_llmrouter_scores(args.scores).items():
        questions, scores = out / f"{split}.questions.jsonl", out / f"{split}.correctness.csv"
        write_outcomes(outcomes, questions, scores)
        written[f"{split}_questions"], written[f"{split}_outcomes"] = str(questions), str(scores)
    if args.candidates:
        prices = read_prices(args.candidates)
        (out / "prices.json").write_text(json.dumps(prices, indent=2) + "\n", encoding="utf-8")
        written["prices"] = str(out / "prices.json")
    print_json(written)
    return 0


def _eval_classifier_model(args: argparse.Namespace, tasks: list[str]):
    """knn needs nothing; llm/hybrid take the classifier model of --config (task descriptions from the config
    where a task name matches, else the name itself)."""
    from coe_router.routing.classifiers import build_classifier

    if args.classifier == "knn":
        return build_classifier("knn", {t: t for t in tasks})
    if not args.config:
        raise ValueError(f"classifier {args.classifier!r} needs --config (its classifier.model is used)")
    from coe_router.config import load_config
    from coe_router.models.factory import build_models

    config = load_config(args.config)
    name = config.classifier.model
    if name is None:
        raise ValueError(f"{args.config}: classifier.model is not set")
    model = build_models(config, {name})[name]
    descriptions = {t: config.tasks.get(t, t) for t in tasks}
    return build_classifier(args.classifier, descriptions, model, threshold=args.threshold)


def _eval_classifier(args: argparse.Namespace) -> int:
    from coe_router.evaluation.embedding_cache import encode_cached
    from coe_router.evaluation.outcomes import read_questions
    from coe_router.evaluation.replay import classification_report, classify, retrieve

    train, test = read_questions(args.train_questions), read_questions(args.test_questions)
    if args.limit:
        test = test.take(list(range(min(args.limit, test.n))))
    encoder = get_encoder()
    train_vectors = encode_cached(train.questions, encoder, cache_dir=args.cache_dir, desc="encoding train")
    test_vectors = encode_cached(test.questions, encoder, cache_dir=args.cache_dir, desc="encoding test")
    classifier = _eval_classifier_model(args, train.tasks)
    retrieved = retrieve(train_vectors, train.categories, test_vectors, args.k, train.questions, train.ids)
    decisions = classify(classifier, test.questions, retrieved, test.options or None, progress=True)
    report = classification_report(test.categories, [d.task for d in decisions], classifier=args.classifier, k=args.k)
    if args.plot:
        from coe_router.evaluation.plots import PlotDependencyError, plot_confusion

        try:
            plot_confusion(report.confusion, report.labels, args.plot,
                           title=f"{args.classifier} classifier (k={args.k}), accuracy {report.accuracy:.1f}%")
        except PlotDependencyError as exc:
            print(f"coe: error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print_json(report.model_dump())
        return 0
    print(f"{args.classifier} classifier, k={args.k}, n={report.n}: accuracy {report.accuracy:.2f}%  "
          f"macro P/R/F1 {report.macro_precision:.2f}/{report.macro_recall:.2f}/{report.macro_f1:.2f}")
    for task, figures in report.per_class.items():
        print(f"  {task:<24} P {figures.precision:6.2f}  R {figures.recall:6.2f}  F1 {figures.f1:6.2f}  n={figures.support}")
    return 0


def _knn_params(args: argparse.Namespace):
    from coe_router.routing.query_router import KnnRouterParams

    return KnnRouterParams(k=args.knn_k, weighting=args.weighting, temperature=args.temperature, prior=args.prior,
                           prior_strength=args.prior_strength, task_k=args.task_k, cost_weight=args.cost_weight)


def _eval_replay(args: argparse.Namespace) -> int:
    from coe_router.evaluation.embedding_cache import encode_cached
    from coe_router.evaluation.outcomes import read_outcomes, read_prices
    from coe_router.evaluation.replay import ROUTERS, ReplayBench, prepare_pool

    routers = list(ROUTERS) if args.router == "all" else split_list(args.router)
    unknown = [r for r in routers if r not in ROUTERS]
    if unknown:
        raise ValueError(f"unknown router(s) {unknown} ({', '.join(ROUTERS)}, all)")
    train = read_outcomes(args.train_outcomes, args.train_questions)
    test = read_outcomes(args.test_outcomes, args.test_questions)
    train, test, _, _ = prepare_pool(train, test, split_list(args.models), args.missing)
    prices = read_prices(args.prices) if args.prices else None
    train_vectors = test_vectors = None
    if {"two-stage", "knn-router"} & set(routers):
        encoder = get_encoder()
        train_vectors = encode_cached(train.questions, encoder, cache_dir=args.cache_dir, desc="encoding train")
        test_vectors = encode_cached(test.questions, encoder, cache_dir=args.cache_dir, desc="encoding test")
    params = _knn_params(args)
    tuning = None
    if args.tune and "knn-router" in routers:
        from coe_router.evaluation.tuning import default_grid, tune_knn_router

        tuning = tune_knn_router(train.models, train_vectors, train.scores, train.categories.tolist(),
                                 grid=default_grid(args.cost_weight, task_k=args.k), prices=prices, progress=True)
        params = tuning.best
    classifier = None
    if args.classifier != "knn":
        classifier = _eval_classifier_model(args, train.tasks)
    bench = ReplayBench(train, test, train_vectors, test_vectors, prices=prices, classifier_k=args.k,
                        knn_params=params, classifier=classifier)
    results = bench.run_all(routers)
    if args.json:
        payload = [r.model_dump() for r in results]
        if tuning is not None:
            for item in payload:
                if item["router"] == "knn-router":
                    item["cv_accuracy"] = tuning.best_accuracy
        print_json(payload[0] if len(payload) == 1 else payload)
        return 0
    print(f"{test.n} test questions, {len(train.models)} models, {train.n} training questions")
    for r in results:
        extra = []
        if r.accuracy_std is not None:
            extra.append(f"+/- {r.accuracy_std:.2f} over {r.params.get('seeds')} seeds")
        if r.classifier_accuracy is not None:
            extra.append(f"classifier {r.classifier_accuracy:.2f}%")
        if r.mean_price is not None:
            extra.append(f"${r.mean_price:.3f}/1M tokens")
        print(f"  {r.router:<12} {r.accuracy:6.2f}%  " + "  ".join(extra))
    return 0


def _add_knn_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("knn-router")
    group.add_argument("--knn-k", type=int, default=100, help="neighbours whose outcomes vote (default 100)")
    group.add_argument("--weighting", choices=["uniform", "similarity", "softmax"], default="similarity")
    group.add_argument("--temperature", type=float, default=0.05, help="softmax weighting temperature")
    group.add_argument("--prior", choices=["none", "global", "task"], default="task")
    group.add_argument("--prior-strength", type=float, default=20.0, help="pseudo-count of the prior")
    group.add_argument("--task-k", type=int, default=10, help="neighbours for the task posterior of the task prior")
    group.add_argument("--cost-weight", type=float, default=0.0, help="lambda in score - lambda * price / max price")
    group.add_argument("--tune", action="store_true", help="pick the knn-router settings by 5-fold CV on train")


def add_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="offline evaluation of classifiers and routers on recorded data")
    steps = evaluate.add_subparsers(dest="action", required=True)

    split = steps.add_parser("split", help="deterministic category-stratified train/test split")
    split.add_argument("--questions", type=Path, required=True)
    split.add_argument("--outcomes", type=Path, required=True)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--test-fraction", type=float, default=0.3)
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=_split)

    imp = steps.add_parser("import-llmrouter", help="LLMRouter scores_with_task.jsonl -> questions/correctness files")
    imp.add_argument("--scores", type=Path, required=True)
    imp.add_argument("--candidates", type=Path, help="llm_candidates/default_llm.json (writes prices.json)")
    imp.add_argument("--out", type=Path, required=True)
    imp.set_defaults(run=_import_llmrouter)

    cls = steps.add_parser("classifier", help="task classification accuracy, P/R/F1 and confusion matrix")
    cls.add_argument("--train-questions", type=Path, required=True, help="labelled examples (the retriever's memory)")
    cls.add_argument("--test-questions", type=Path, required=True)
    cls.add_argument("--classifier", choices=["knn", "llm", "hybrid"], default="knn")
    cls.add_argument("--k", type=int, default=5, help="retrieved examples per question")
    cls.add_argument("--config", type=Path, help="config whose classifier.model serves llm/hybrid")
    cls.add_argument("--threshold", type=float, default=0.6, help="hybrid: knn vote share needed to skip the llm")
    cls.add_argument("--limit", type=int, help="only the first N test questions (llm classifiers are slow)")
    cls.add_argument("--plot", type=Path, help="write the confusion-matrix heatmap (needs matplotlib)")
    cls.add_argument("--cache-dir", help="embedding cache (default ~/.cache/coe-router/embeddings; '-' disables)")
    cls.add_argument("--json", action="store_true")
    cls.set_defaults(run=_eval_classifier)

    replay = steps.add_parser("replay", help="score routers by replaying recorded answers")
    for name in ("train-questions", "train-outcomes", "test-questions", "test-outcomes"):
        replay.add_argument(f"--{name}", type=Path, required=True)
    replay.add_argument("--router", default="all",
                        help="random, best-single, oracle, category, two-stage, knn-router; comma-separated or all")
    replay.add_argument("--classifier", choices=["knn", "llm", "hybrid"], default="knn", help="two-stage classifier")
    replay.add_argument("--k", type=int, default=10, help="retrieved examples for the two-stage classifier")
    replay.add_argument("--config", type=Path, help="config for --classifier llm/hybrid")
    replay.add_argument("--threshold", type=float, default=0.6)
    replay.add_argument("--models", help="comma-separated model pool (default: all models in the outcomes)")
    replay.add_argument("--prices", type=Path, help="model -> price per 1M tokens: adds mean_price per router")
    replay.add_argument("--missing", choices=["drop", "zero"], default="drop",
                        help="not-evaluated cells: drop the question from train and test (default) or count as wrong")
    replay.add_argument("--cache-dir")
    replay.add_argument("--json", action="store_true")
    _add_knn_options(replay)
    replay.set_defaults(run=_eval_replay)
