"""`coe leaderboard run|merge|build|show|plot`: record outcomes (split across workers with `run --shard K/N`, joined
with `merge`), build capability leaderboards (task -> expert maps), show and plot them. `build` has `--json` for one
machine-readable object on stdout; progress bars go to stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coe_router.cli.common import print_json, split_list


def _leaderboard_run(args: argparse.Namespace) -> int:
    from coe_router.builder import task_map_from_config
    from coe_router.config import ConfigError, load_config
    from coe_router.evaluation.runner import parse_shard, read_mc_questions, run_outcomes, shard_questions
    from coe_router.models.factory import build_models
    from coe_router.routing.pool import ExpertPool

    shard = parse_shard(args.shard) if args.shard else None
    config = load_config(args.config)
    experts = [e.strip() for e in args.experts.split(",")] if args.experts else list(config.experts)
    unknown = [e for e in experts if e not in config.experts]
    if unknown:
        raise ConfigError(f"--experts: not in the config: {unknown}")
    models = build_models(config, {config.experts[e].model for e in experts})
    pool = ExpertPool({e: config.experts[e] for e in experts}, models, task_map_from_config(config))
    questions = read_mc_questions(args.questions, args.limit)
    if shard is not None:  # --limit first, so the shards of a limited run split the same questions
        questions = shard_questions(questions, *shard)
    counts = run_outcomes(pool, questions, args.out, experts=experts,
                          concurrency=args.concurrency, retries=args.retries)
    part = f" (shard {shard[0]}/{shard[1]}: {len(questions)} questions)" if shard else ""
    print(f"{args.out}: asked {counts['asked']}, already done {counts['skipped']}, failed {counts['failed']}{part}")
    return 0 if counts["failed"] == 0 else 1


def _leaderboard_merge(args: argparse.Namespace) -> int:
    from coe_router.evaluation.runner import MergeConflictError, merge_correctness

    try:
        counts = merge_correctness(args.files, args.out, questions=args.questions)
    except MergeConflictError as exc:
        print(f"coe: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {counts['rows']} questions from {counts['files']} files "
          f"({counts['duplicates']} met in more than one, their cells agreeing)")
    return 0


def _leaderboard_build(args: argparse.Namespace) -> int:
    from coe_router.evaluation.leaderboard import (
        build_leaderboard,
        format_leaderboard,
        leaderboard_from_table,
        parse_counts,
        write_leaderboard,
    )
    from coe_router.evaluation.long_format import read_long
    from coe_router.outcomes import read_outcomes, read_prices

    prices = read_prices(args.prices) if args.prices else None
    if args.table:
        board = leaderboard_from_table(args.table, counts=parse_counts(args.counts), prices=prices,
                                       models=split_list(args.models))
    else:
        if not args.outcomes:
            raise ValueError("give --outcomes correctness.csv (optionally with --questions) or --table leaderboard.csv")
        outcomes = read_outcomes(args.outcomes, args.questions)
        missing = args.missing
        for journal in args.feedback or []:   # served feedback: one expert per row, so cells are partial
            outcomes = outcomes.extended(read_long(journal))
            missing = "per-model"
        board = build_leaderboard(outcomes, prices=prices, models=split_list(args.models), missing=missing,
                                  source=str(args.outcomes))
    write_leaderboard(board, args.out)
    if args.json:
        print_json({"out": str(args.out), "best": board.best, "best_average": board.best_average})
    else:
        print(format_leaderboard(board))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _leaderboard_show(args: argparse.Namespace) -> int:
    from coe_router.evaluation.leaderboard import format_leaderboard, read_leaderboard

    print(format_leaderboard(read_leaderboard(args.leaderboard), top=args.top))
    return 0


def _leaderboard_plot(args: argparse.Namespace) -> int:
    from coe_router.evaluation.leaderboard import read_leaderboard
    from coe_router.evaluation.plots import PlotDependencyError, plot_radar

    try:
        out = plot_radar(read_leaderboard(args.leaderboard), args.out, models=split_list(args.models), top=args.top,
                         title=args.title)
    except PlotDependencyError as exc:
        print(f"coe: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser("leaderboard", help="build, show and plot capability leaderboards (task->expert maps)")
    actions = board.add_subparsers(dest="action", required=True)

    build = actions.add_parser("build", help="leaderboard JSON from recorded outcomes or an aggregate table")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--outcomes", type=Path, help="correctness.csv: question_id,category,<model>... (1/0/empty)")
    source.add_argument("--table", type=Path, help="aggregate CSV: a model column and one accuracy column per task")
    build.add_argument("--questions", type=Path, help="questions.jsonl: only these questions are counted")
    build.add_argument("--counts", help="per-task counts for --table: task=n,... or a JSON/CSV file")
    build.add_argument("--models", help="comma-separated subset of models")
    build.add_argument("--prices", type=Path, help="model -> price per 1M tokens (JSON or CSV); breaks ties")
    build.add_argument("--missing", choices=["drop", "zero", "per-model"], default="drop",
                       help="not-evaluated cells: drop the question (default), count as wrong, or per-model N_i")
    build.add_argument("--feedback", type=Path, action="append",
                       help="journal of served feedback (long format, router.feedback); counted per model")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--json", action="store_true")
    build.set_defaults(run=_leaderboard_build)

    show = actions.add_parser("show", help="best experts per task of a leaderboard JSON")
    show.add_argument("leaderboard", type=Path)
    show.add_argument("--top", type=int, default=3)
    show.set_defaults(run=_leaderboard_show)

    plot = actions.add_parser("plot", help="capability radar chart (needs matplotlib)")
    plot.add_argument("leaderboard", type=Path)
    plot.add_argument("--out", type=Path, required=True)
    plot.add_argument("--models", help="comma-separated models (default: top best-average + each task's best)")
    plot.add_argument("--top", type=int, default=5)
    plot.add_argument("--title")
    plot.set_defaults(run=_leaderboard_plot)

    run = actions.add_parser(
        "run", help="ask the configured experts a labelled multiple-choice set and record outcomes (resumable)")
    run.add_argument("--questions", type=Path, required=True, help="questions.jsonl with options and answer letters")
    run.add_argument("--config", type=Path)
    run.add_argument("--out", type=Path, required=True, help="correctness CSV (a journal is kept beside it)")
    run.add_argument("--experts", help="comma-separated experts (default: all)")
    run.add_argument("--concurrency", type=int, default=2)
    run.add_argument("--retries", type=int, default=2)
    run.add_argument("--limit", type=int, help="only the first N questions")
    run.add_argument("--shard", metavar="K/N",
                     help="only shard K of N (questions split by a hash of question_id; merge the N CSVs with "
                          "`coe leaderboard merge`)")
    run.set_defaults(run=_leaderboard_run)

    merge = actions.add_parser(
        "merge", help="join correctness CSVs (shards of one run) into one; conflicting cells are refused, named")
    merge.add_argument("files", type=Path, nargs="+", help="correctness CSVs written by `coe leaderboard run`")
    merge.add_argument("--out", type=Path, required=True)
    merge.add_argument("--questions", type=Path,
                       help="questions.jsonl: rows in its order (the order of an unsplit run)")
    merge.set_defaults(run=_leaderboard_merge)
