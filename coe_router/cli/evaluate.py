"""`coe eval split|import|import-llmrouter|classifier|replay|curve`: offline evaluation of classifiers and routers
on recorded data (no model runs, except the llm/hybrid classifiers). Formats and metrics: docs/EVALUATION.md.

Every command that prints figures has `--json` for one machine-readable object on stdout; progress bars go to
stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coe_router.cli.common import print_json, split_list
from coe_router.evaluation import DEFAULT_CLASSIFIER_K
from coe_router.evaluation.prices import PER_QUERY


def get_encoder():
    """The MiniLM encoder, loaded on first cache miss (tests replace this function with a fake)."""
    from coe_router.evaluation.embedding_cache import LazyEncoder

    return LazyEncoder()


def _k_option(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return value


def _plot(name: str, *args, **kwargs) -> bool:
    """Draw with coe_router.evaluation.plots.<name>; False (and a message) when matplotlib is missing."""
    from coe_router.evaluation import plots

    try:
        getattr(plots, name)(*args, **kwargs)
    except plots.PlotDependencyError as exc:
        print(f"coe: error: {exc}", file=sys.stderr)
        return False
    return True


def _plot_then_json(out, plot: tuple, title: str, as_json: bool, report) -> int | None:
    """Draw `plot` (name, *args) into `out` when asked, print `report` as JSON when asked: the exit code when the
    command is done (2: the plot failed), None when the caller prints its text form."""
    if out and not _plot(*plot, out, title=title):
        return 2
    if as_json:
        print_json(report.model_dump())
        return 0
    return None


def _split(args: argparse.Namespace) -> int:
    from coe_router.outcomes import read_outcomes
    from coe_router.evaluation.splits import write_split

    paths = write_split(read_outcomes(args.outcomes, args.questions), args.out, args.test_fraction, args.seed)
    print_json({k: str(v) for k, v in paths.items()})
    return 0


def _import_long(args: argparse.Namespace) -> int:
    """A long file (one row per question and model) -> questions.jsonl + correctness.csv (+ costs.csv)."""
    from coe_router.evaluation.long_format import ScoreRange, read_long
    from coe_router.outcomes import costs_path_for, write_outcomes
    from coe_router.evaluation.prices import read_price_list

    prices = read_price_list(args.prices) if args.prices else None
    outcomes = read_long(args.long, ScoreRange.parse(args.score_range, args.clip), prices)
    questions, scores = args.out / "questions.jsonl", args.out / "correctness.csv"
    write_outcomes(outcomes, questions, scores)
    written = {"questions": str(questions), "outcomes": str(scores), "n": outcomes.n, "models": outcomes.models}
    if outcomes.costs is not None:
        written["costs"] = str(costs_path_for(scores))
    print_json(written)
    return 0


def _import_llmrouter(args: argparse.Namespace) -> int:
    """LLMRouter's scores_with_task.jsonl -> the questions.jsonl + correctness.csv pair per split (+ prices.json)."""
    from coe_router.outcomes import read_llmrouter_scores, read_prices, write_outcomes

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


HYBRID_THRESHOLD = 0.6
"""--threshold's value when it is not given (the knn vote share above which the hybrid classifier skips the llm)."""


def refuse_unused_options(args: argparse.Namespace) -> None:
    """An option that would change nothing is an error, not a silent no-op: a user who passes it expects an effect."""
    threshold = getattr(args, "threshold", None)
    if threshold is not None and getattr(args, "classifier", "knn") != "hybrid":
        raise ValueError(f"--threshold {threshold:g} only applies to --classifier hybrid (this run uses "
                         f"--classifier {getattr(args, 'classifier', 'knn')})")
    if getattr(args, "pool", None) and getattr(args, "models", None):
        raise ValueError("--models and --pool both name model pools: give the pool as --pool NAME=M1,M2 "
                         "(repeatable) or use --models alone")


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
    return build_classifier(args.classifier, descriptions, model,
                            threshold=HYBRID_THRESHOLD if args.threshold is None else args.threshold)


def _encode(args: argparse.Namespace, train, test):
    from coe_router.evaluation.embedding_cache import encode_cached

    encoder = get_encoder()
    return (encode_cached(train.questions, encoder, cache_dir=args.cache_dir, desc="encoding train"),
            encode_cached(test.questions, encoder, cache_dir=args.cache_dir, desc="encoding test"))


def _classifier_k(args: argparse.Namespace, train_vectors, train) -> int:
    """--k as given, or `auto`: the best leave-one-out k on train."""
    if args.k != "auto":
        return args.k
    from coe_router.evaluation.tuning import best_classifier_k, tune_classifier_k

    return best_classifier_k(tune_classifier_k(train_vectors, train.categories))


def _eval_classifier(args: argparse.Namespace) -> int:
    from coe_router.outcomes import read_questions
    from coe_router.evaluation.replay import classification_report, classify, retrieve

    refuse_unused_options(args)
    train, test = read_questions(args.train_questions), read_questions(args.test_questions)
    if args.limit:
        test = test.take(list(range(min(args.limit, test.n))))
    train_vectors, test_vectors = _encode(args, train, test)
    k = _classifier_k(args, train_vectors, train)
    classifier = _eval_classifier_model(args, train.tasks)
    retrieved = retrieve(train_vectors, train.categories, test_vectors, k, train.questions, train.ids)
    decisions = classify(classifier, test.questions, retrieved, test.options or None, progress=True)
    report = classification_report(test.categories, [d.task for d in decisions], classifier=args.classifier, k=k)
    done = _plot_then_json(args.plot, ("plot_confusion", report.confusion, report.labels),
                           f"{args.classifier} classifier (k={k}), accuracy {report.accuracy:.1f}%", args.json, report)
    if done is not None:
        return done
    print(f"{args.classifier} classifier, k={k}, n={report.n}: accuracy {report.accuracy:.2f}%  "
          f"macro P/R/F1 {report.macro_precision:.2f}/{report.macro_recall:.2f}/{report.macro_f1:.2f}")
    for task, figures in report.per_class.items():
        print(f"  {task:<24} P {figures.precision:6.2f}  R {figures.recall:6.2f}  F1 {figures.f1:6.2f}  n={figures.support}")
    return 0


def _knn_params(args: argparse.Namespace, k: int):
    from coe_router.routing.query_router import KnnRouterParams

    return KnnRouterParams(k=args.knn_k, weighting=args.weighting, temperature=args.temperature, prior=args.prior,
                           prior_strength=args.prior_strength, task_k=args.task_k, cost_weight=args.cost_weight)


class _Setup:
    """What replay and curve share: the splits on one fixed question set for every pool, prices, vectors."""

    def __init__(self, args: argparse.Namespace, need_vectors: bool):
        from coe_router.outcomes import read_outcomes
        from coe_router.evaluation.prices import parse_tokens, read_price_list
        from coe_router.evaluation.replay import parse_pools, pool_union, prepare_pool

        refuse_unused_options(args)
        train = read_outcomes(args.train_outcomes, args.train_questions)
        test = read_outcomes(args.test_outcomes, args.test_questions)
        if getattr(args, "pool", None):
            self.pools = parse_pools(args.pool, train.models)
        else:
            self.pools = {"": split_list(args.models) or list(train.models)}
        self.train, self.test, _, _ = prepare_pool(train, test, pool_union(self.pools), args.missing)
        self.price_list = read_price_list(args.prices, pool_union(self.pools)) if args.prices else None
        self.tokens = parse_tokens(args.tokens_per_query)
        self.train_vectors = self.test_vectors = None
        if need_vectors:
            self.train_vectors, self.test_vectors = _encode(args, self.train, self.test)
        self.k = _classifier_k(args, self.train_vectors, self.train) if need_vectors else (
            DEFAULT_CLASSIFIER_K if args.k == "auto" else args.k)

    def bench(self, args: argparse.Namespace, pool: list[str]):
        """The ReplayBench of one pool (knn-router tuned on its train part with --tune), and the cost unit."""
        from coe_router.evaluation.prices import routing_prices
        from coe_router.evaluation.replay import ReplayBench

        train, test = self.train.select_models(pool), self.test.select_models(pool)
        prices, unit = routing_prices(self.price_list, pool, self.tokens, train)
        params, cv = _knn_params(args, self.k), None
        if args.tune and self.train_vectors is not None:
            from coe_router.evaluation.tuning import default_grid, tune_knn_router

            tuning = tune_knn_router(pool, self.train_vectors, train.scores, train.categories.tolist(),
                                     grid=default_grid(args.cost_weight, task_k=params.task_k), prices=prices,
                                     progress=True)
            params, cv = tuning.best, tuning.best_accuracy
        classifier = _eval_classifier_model(args, train.tasks) if args.classifier != "knn" else None
        bench = ReplayBench(train, test, self.train_vectors, self.test_vectors, prices=prices, classifier_k=self.k,
                            knn_params=params, classifier=classifier)
        return bench, unit, cv


def _eval_replay(args: argparse.Namespace) -> int:
    from coe_router.evaluation.replay import EXTRA_ROUTERS, ROUTERS

    routers = list(ROUTERS) if args.router == "all" else split_list(args.router)
    unknown = [r for r in routers if r not in ROUTERS + EXTRA_ROUTERS]
    if unknown:
        raise ValueError(f"unknown router(s) {unknown} ({', '.join(ROUTERS + EXTRA_ROUTERS)}, all)")
    setup = _Setup(args, need_vectors=bool({"two-stage", "knn-router", *EXTRA_ROUTERS} & set(routers)) or args.k == "auto")
    if args.write_config and len(setup.pools) > 1:
        raise ValueError("--write-config writes one pool's knn-router settings: give one pool (--models, not --pool)")
    by_pool, picks = {}, []
    for name, pool in setup.pools.items():
        bench, unit, cv = setup.bench(args, pool)
        if args.write_config:
            _write_router_settings(args.write_config, bench.knn_params)
        payload = [r.model_dump() for r in bench.run_all(routers)]
        for item in payload:
            item["price_unit"] = unit
            if item["router"] == "knn-router" and cv is not None:
                item["cv_accuracy"] = cv
        by_pool[name] = payload
        picks.extend(bench.picks_rows(name))
    if args.picks:
        _write_picks(args.picks, picks)
    if args.json:
        if args.pool:
            print_json({"n_train": setup.train.n, "n_test": setup.test.n, "classifier_k": setup.k, "pools": by_pool})
        else:
            payload = by_pool[""]
            print_json(payload[0] if len(payload) == 1 else payload)
        return 0
    print(f"{setup.test.n} test questions, {setup.train.n} training questions (the same for every pool), "
          f"classifier k={setup.k}")
    for name, payload in by_pool.items():
        print(f"pool {name}: {len(setup.pools[name])} models" if name else f"{len(setup.pools[name])} models")
        for r in payload:
            print("  " + _replay_line(r))
    return 0


def _write_picks(path: Path, rows: list[dict]) -> None:
    """Per-question picks, long format: what a router researcher joins with other routers' picks."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["pool", "question_id", "category", "router", "model", "score"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} picks to {path}", file=sys.stderr)


def _write_router_settings(path: str, params) -> None:
    """`router.knn` as YAML, to paste (or merge) into a config: the settings this replay evaluated."""
    import yaml

    Path(path).write_text(yaml.safe_dump({"router": {"knn": params.model_dump()}}, sort_keys=False), encoding="utf-8")
    print(f"wrote the knn-router settings to {path} (router.knn)", file=sys.stderr)


def _replay_line(r: dict) -> str:
    extra = []
    if r["accuracy_std"] is not None:
        extra.append(f"+/- {r['accuracy_std']:.2f} over {r['params'].get('seeds')} seeds")
    if r["classifier_accuracy"] is not None:
        extra.append(f"classifier {r['classifier_accuracy']:.2f}%")
    if r["macro_accuracy"] is not None:
        extra.append(f"macro {r['macro_accuracy']:.2f}%")
    if r["mean_price"] is not None:
        extra.append(f"${r['mean_price']:.6f}/query" if r.get("price_unit") == PER_QUERY
                     else f"${r['mean_price']:.3f}/1M tokens")
    if r["mean_cost"] is not None:
        extra.append(f"${r['mean_cost']:.6f}/query")
    for d in r["differences"]:
        extra.append(f"vs {d['b']} {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")
    return f"{r['router']:<12} {r['accuracy']:6.2f}%  " + "  ".join(extra)


def _eval_curve(args: argparse.Namespace) -> int:
    """One curve per pool (`--pool`, repeatable, all on one fixed question set), or one for `--models`."""
    from coe_router.evaluation.curves import CURVE_ROUTERS, DEFAULT_WEIGHTS, cost_curve
    from coe_router.evaluation.prices import PER_QUERY, cost_matrix

    routers = split_list(args.router) or list(CURVE_ROUTERS)
    weights = [float(w) for w in split_list(args.weights)] if args.weights else list(DEFAULT_WEIGHTS)
    if any(w < 0 for w in weights):
        raise ValueError(f"cost weights must be >= 0, got {weights}")
    setup = _Setup(args, need_vectors=routers != ["category"] or args.k == "auto")
    reports = {}
    for name, pool in setup.pools.items():
        bench, unit, _ = setup.bench(args, pool)
        costs = cost_matrix(bench.test, bench.prices)
        if costs is None:
            raise ValueError("coe eval curve needs --prices or per-query costs (costs.csv next to the outcomes)")
        unit = unit if bench.test.costs is None else PER_QUERY
        reports[name] = cost_curve(bench, costs, unit, weights, routers, samples=args.bootstrap)
    for name, report in reports.items():
        if args.out:
            out = args.out if len(reports) == 1 else args.out.with_name(f"{args.out.stem}-{_slug(name)}{args.out.suffix}")
            title = f"Quality vs cost ({report.n} test questions, {len(setup.pools[name])} models{f', {name}' if name else ''})"
            if not _plot("plot_curve", report, out, title=title):
                return 2
    if args.json:
        print_json({"pools": {n: r.model_dump() for n, r in reports.items()}} if args.pool else
                   reports[""].model_dump())
        return 0
    for name, report in reports.items():
        if name:
            print(f"pool {name}: {len(setup.pools[name])} models")
        print(f"{report.n} test questions; cost in {report.cost_unit}; weak {report.weak.model} "
              f"({report.weak.accuracy:.2f}%, {report.weak.cost:.4g}), strong {report.strong.model} "
              f"({report.strong.accuracy:.2f}%, {report.strong.cost:.4g})")
        for curve in [*report.routers, report.mix_of_singles]:
            print(f"{curve.router}: {_curve_summary(curve)}")
            for p in curve.points if curve is not report.mix_of_singles else []:
                print(f"  {p.setting:<16} {p.accuracy:6.2f}%  {p.cost:.4g}  strong calls "
                      f"{100 * p.strong_share:.0f}%" + ("  pareto" if p.pareto else ""))
        for interval in report.intervals:
            print(f"{interval.a} - {interval.b}: {interval.text()}")
    return 0


def _eval_calibrate(args: argparse.Namespace) -> int:
    """The knn-router's cost weight for a target share of strong-model calls, calibrated on train, checked on test."""
    import numpy as np

    from coe_router.evaluation.calibration import calibrate_cost_weight, held_out_estimates, strong_share
    from coe_router.evaluation.replay_routers import BestSingleRouter

    setup = _Setup(args, need_vectors=True)
    bench, _, _ = setup.bench(args, setup.pools[""])
    if bench.prices is None:
        raise ValueError("coe eval calibrate needs --prices (or per-query costs): a cost weight trades score for price")
    knn = bench.knn_router(cost_weight=0.0, router="calibrate")
    strong = BestSingleRouter.fit(bench.models, bench.train.scores, bench.prices).choice
    calibration = calibrate_cost_weight(knn, held_out_estimates(knn), strong, args.strong_share)
    test_expected = knn.expected_scores(*knn.neighbours(bench.test_vectors))
    choice = knn.choose(test_expected, calibration.cost_weight)
    result = {**calibration.model_dump(), "test_share": round(strong_share(test_expected, knn, strong,
                                                                           calibration.cost_weight), 4),
              "test_accuracy": round(float(bench.test.scores[np.arange(bench.test.n), choice].mean() * 100), 2)}
    if args.write_config:
        _write_router_settings(args.write_config, bench.knn_params.model_copy(
            update={"cost_weight": calibration.cost_weight}))
    if args.json:
        print_json(result)
        return 0
    print(f"cost_weight {calibration.cost_weight:g}: {100 * calibration.train_share:.1f}% of the training queries to "
          f"{calibration.strong_model} (target {100 * args.strong_share:.1f}%, {100 * calibration.share_at_zero:.1f}% "
          f"at cost weight 0); on test {100 * result['test_share']:.1f}% of the queries, accuracy "
          f"{result['test_accuracy']:.2f}%")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower() or "pool"


def _curve_summary(curve) -> str:
    """`APGR 0.61 [0.52, 0.70]  CPT(50%) 23.1% [..]  calls(50%) 12.0% [..] ...`: each figure with its interval."""
    from coe_router.evaluation.curves import span_text as span

    parts = [f"APGR {curve.apgr}{span(curve.apgr_interval)}" if curve.apgr is not None else "APGR -"]
    for g, c in enumerate(curve.cpt):
        parts.append(f"CPT({c.gap}%) {c.percent_of_strong:.1f}%{span(curve.cpt_interval[g])}" if c else "CPT -")
    for g, c in enumerate(curve.calls):
        parts.append(f"calls({c.gap}%) {c.strong_share:.1f}%{span(curve.calls_interval[g])}" if c else "calls -")
    return "  ".join(parts)


def _add_knn_options(parser: argparse.ArgumentParser) -> None:
    """Defaults from KnnRouterParams, the same as a config's `router.knn` (what replay evaluates is deployed)."""
    from coe_router.routing.query_router import KnnRouterParams

    default = KnnRouterParams()
    group = parser.add_argument_group("knn-router")
    group.add_argument("--knn-k", type=int, default=default.k, help=f"neighbours whose outcomes vote (default {default.k})")
    group.add_argument("--weighting", choices=["uniform", "similarity", "softmax"], default=default.weighting)
    group.add_argument("--temperature", type=float, default=default.temperature, help="softmax weighting temperature")
    group.add_argument("--prior", choices=["none", "global", "task"], default=default.prior)
    group.add_argument("--prior-strength", type=float, default=default.prior_strength,
                       help=f"pseudo-count of the prior (default {default.prior_strength:g})")
    group.add_argument("--task-k", type=int, default=default.task_k,
                       help=f"neighbours for the task posterior of the task prior (default {default.task_k})")
    group.add_argument("--cost-weight", type=float, default=default.cost_weight,
                       help="lambda in score - lambda * price / max price")
    group.add_argument("--tune", action="store_true", help="pick the knn-router settings by 5-fold CV on train")


def _add_k(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--k", type=_k_option, default=DEFAULT_CLASSIFIER_K,
                        help=f"retrieved examples {what} (default {DEFAULT_CLASSIFIER_K}; auto: leave-one-out on train)")


def _add_split_inputs(parser: argparse.ArgumentParser) -> None:
    for name in ("train-questions", "train-outcomes", "test-questions", "test-outcomes"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--models", help="comma-separated model pool (default: all models in the outcomes)")
    parser.add_argument("--prices", type=Path, help="price list per 1M tokens (JSON or CSV; see docs/EVALUATION.md)")
    parser.add_argument("--tokens-per-query", help="IN,OUT tokens per query: prices become dollars per query")
    parser.add_argument("--missing", choices=["drop", "zero"], default="drop",
                        help="not-evaluated cells: drop the question from train and test (default) or count as wrong")
    parser.add_argument("--classifier", choices=["knn", "llm", "hybrid"], default="knn", help="two-stage classifier")
    parser.add_argument("--config", type=Path, help="config for --classifier llm/hybrid")
    parser.add_argument("--threshold", type=float,
                        help=f"hybrid classifier: knn vote share needed to skip the llm (default {HYBRID_THRESHOLD})")
    parser.add_argument("--cache-dir", help="embedding cache (default ~/.cache/coe-router/embeddings; '-' disables)")
    parser.add_argument("--json", action="store_true")
    _add_k(parser, "for the two-stage classifier")
    _add_knn_options(parser)


def add_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="offline evaluation of classifiers and routers on recorded data")
    steps = evaluate.add_subparsers(dest="action", required=True)

    split = steps.add_parser("split", help="deterministic category-stratified train/test split (duplicates kept together)")
    split.add_argument("--questions", type=Path, required=True)
    split.add_argument("--outcomes", type=Path, required=True)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--test-fraction", type=float, default=0.3)
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=_split)

    imp = steps.add_parser("import", help="long outcomes file (one row per question and model) -> wide files")
    imp.add_argument("--long", type=Path, required=True, help="CSV or JSONL: question_id, category, question, model, "
                     "score [, cost, input_tokens, output_tokens]")
    imp.add_argument("--score-range", help="MIN,MAX of the scores, rescaled to 0..1 (default 0,1)")
    imp.add_argument("--clip", action="store_true", help="clamp scores outside the range instead of failing")
    imp.add_argument("--prices", type=Path, help="input/output prices per 1M tokens, to cost the token columns")
    imp.add_argument("--out", type=Path, required=True, help="folder for questions.jsonl, correctness.csv, costs.csv")
    imp.set_defaults(run=_import_long)

    llm = steps.add_parser("import-llmrouter", help="LLMRouter scores_with_task.jsonl -> questions/correctness files")
    llm.add_argument("--scores", type=Path, required=True)
    llm.add_argument("--candidates", type=Path, help="llm_candidates/default_llm.json (writes prices.json)")
    llm.add_argument("--out", type=Path, required=True)
    llm.set_defaults(run=_import_llmrouter)

    cls = steps.add_parser("classifier", help="task classification accuracy, P/R/F1 and confusion matrix")
    cls.add_argument("--train-questions", type=Path, required=True, help="labelled examples (the retriever's memory)")
    cls.add_argument("--test-questions", type=Path, required=True)
    cls.add_argument("--classifier", choices=["knn", "llm", "hybrid"], default="knn")
    _add_k(cls, "per question")
    cls.add_argument("--config", type=Path, help="config whose classifier.model serves llm/hybrid")
    cls.add_argument("--threshold", type=float,
                     help=f"hybrid: knn vote share needed to skip the llm (default {HYBRID_THRESHOLD})")
    cls.add_argument("--limit", type=int, help="only the first N test questions (llm classifiers are slow)")
    cls.add_argument("--plot", type=Path, help="write the confusion-matrix heatmap (needs matplotlib)")
    cls.add_argument("--cache-dir", help="embedding cache (default ~/.cache/coe-router/embeddings; '-' disables)")
    cls.add_argument("--json", action="store_true")
    cls.set_defaults(run=_eval_classifier)

    replay = steps.add_parser("replay", help="score routers by replaying recorded answers")
    _add_split_inputs(replay)
    replay.add_argument("--router", default="all",
                        help="random, best-single, oracle, category, two-stage, knn-router, learned-router, mf-router "
                             "(the last two named only: they train networks, and are fed the gold task as category "
                             "is); comma-separated or all")
    replay.add_argument("--pool", action="append", metavar="NAME=M1,M2|*",
                        help="a named model pool (repeatable); all pools are scored on one fixed question set")
    replay.add_argument("--write-config", metavar="FILE",
                        help="write the knn-router settings used (tuned with --tune) as a config's `router.knn` "
                             "section to FILE (YAML), so the deployed router is the evaluated one")
    replay.add_argument("--picks", metavar="FILE", type=Path,
                        help="write each test question's pick per router as CSV (pool, question_id, category, "
                             "router, model, score)")
    replay.set_defaults(run=_eval_replay)

    calibrate = steps.add_parser("calibrate", help="the knn-router's cost weight that sends a chosen share of the "
                                                   "queries to the strong model (calibrated on train)")
    _add_split_inputs(calibrate)
    calibrate.add_argument("--strong-share", type=float, required=True, metavar="FRACTION",
                           help="share of the queries (0-1) the best single model should get, e.g. 0.3")
    calibrate.add_argument("--write-config", metavar="FILE",
                           help="write the knn-router settings with the calibrated cost_weight as `router.knn` (YAML)")
    calibrate.set_defaults(run=_eval_calibrate)

    curve = steps.add_parser("curve", help="quality/cost curves: sweep the cost weight, Pareto points, APGR, CPT")
    _add_split_inputs(curve)
    curve.add_argument("--router", help="knn-router, category, two-stage, mf-router (the default: all four), and "
                                        "cascade (named only: cheap model first, the strong one below a threshold of "
                                        "its estimated score, both paid); comma-separated")
    curve.add_argument("--pool", action="append", metavar="NAME=M1,M2|*",
                       help="a named model pool (repeatable): one curve per pool, all on one fixed question set; "
                            "--out FILE.png then writes FILE-<pool>.png per pool")
    curve.add_argument("--weights", help="comma-separated cost weights lambda (default 0,0.01,...,1)")
    curve.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per interval")
    curve.add_argument("--out", type=Path, help="write the curve plot (PNG, needs matplotlib)")
    curve.set_defaults(run=_eval_curve)
