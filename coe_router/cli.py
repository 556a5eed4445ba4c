"""The `coe` command line: ask the router, build its example index."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .cli_eval import add_eval_commands
from .config import ConfigError, load_config


def _quiet_offline_defaults() -> None:
    """Nothing at run time may reach the network: no hub lookups, no Chroma telemetry."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _ask(args: argparse.Namespace) -> int:
    from .builder import build_graph

    started = time.perf_counter()
    config = load_config(args.config)
    if args.mode:
        config = config.replace(mode=args.mode)
    graph = build_graph(config, progress=not args.json)
    run = _run_config(args.thread)
    result = graph.invoke({"query": args.question, "options": args.option or None}, run)
    return _print_result(result, run, args.json, started)


def _run_config(thread: str | None) -> dict:
    import uuid

    return {"run_name": "coe-router", "tags": ["coe-router", "cli"],
            "configurable": {"thread_id": thread or uuid.uuid4().hex}}


def _resume(args: argparse.Namespace) -> int:
    from langgraph.types import Command

    from .builder import build_graph

    started = time.perf_counter()
    graph = build_graph(load_config(args.config))
    run = _run_config(args.thread)
    answer = {"task": args.task} if args.task else {"expert": args.expert}
    return _print_result(graph.invoke(Command(resume=answer), run), run, args.json, started)


def _print_result(result: dict, run: dict, as_json: bool, started: float) -> int:
    if "__interrupt__" in result:
        request = result["__interrupt__"][0].value
        thread = run["configurable"]["thread_id"]
        print(json.dumps({"needs_review": request, "thread": thread}, ensure_ascii=False))
        print(f"resume with: coe resume --thread {thread} --task TASK (or --expert EXPERT)", file=sys.stderr)
        return 3
    decision = result["decision"]
    steps = result.get("steps")
    if as_json:
        payload = {"answer": result["answer"], "choice": result.get("choice"), "decision": decision.model_dump(mode="json")}
        if steps is not None:
            payload["steps"] = [step.model_dump(mode="json") for step in steps]
            payload["plan_status"] = result.get("plan_status")
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    print(result["answer"])
    print()
    if steps is not None:
        print(f"plan: {result.get('plan_status')}")
        for number, step in enumerate(steps, start=1):
            print(f"  {number}. [{step.task} -> {step.expert}] {step.text[:80]}")
    print(f"task: {decision.task} (confidence {decision.confidence:.2f}, {decision.classifier})")
    print(f"expert: {decision.expert}" + (f"  fallbacks: {', '.join(decision.fallbacks)}" if decision.fallbacks else ""))
    for example in decision.retrieved:
        print(f"  {example.score:.3f}  [{example.task}] {example.question[:90]}")
    if decision.errors:
        print("failed experts: " + "; ".join(f"{k}: {v}" for k, v in decision.errors.items()))
    print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from .builder import open_example_store
    from .example_store import read_examples

    config = load_config(args.config)
    if args.collection:
        config = config.model_copy(update={"retriever": config.retriever.model_copy(update={"collection": args.collection})})
    examples = read_examples(args.questions)
    store = open_example_store(config.model_copy(update={"retriever": config.retriever.model_copy(update={"examples": None})}))
    before = store.count()
    store.add(examples, progress=True)
    print(f"collection {config.retriever.collection!r}: {before} -> {store.count()} examples "
          f"({len(examples)} read from {args.questions})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .batching import BatchingEncoder
    from .builder import build_graph
    from .embeddings import load_encoder, resolve_batch_dtype
    from .server import create_app

    config = load_config(args.config)
    # Concurrent requests share query-embedding calls, and a lone request never waits. Batches of two or more
    # queries run in bfloat16 where the CPU has AMX (--batch-dtype auto); single queries always in float32.
    sentence_encoder = load_encoder(config.retriever.embedding_package, config.retriever.embedding_path)
    sentence_encoder.batch_dtype = resolve_batch_dtype(args.batch_dtype)
    encoder = BatchingEncoder(sentence_encoder, workers=sentence_encoder.workers)  # one batch per encoder thread
    app = create_app(build_graph(config, encoder=encoder, progress=True), token_env=args.token_env,
                     max_query_chars=config.limits.max_query_chars)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _experts(args: argparse.Namespace) -> int:
    from .config import default_config_path
    from .config_edit import add_expert, expert_table, remove_expert

    path = args.config or default_config_path()
    if args.action == "add":
        tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
        add_expert(path, args.name, args.model, tasks, args.rank, args.description or "", args.style)
        print(f"added expert {args.name!r} to {path}")
    elif args.action == "remove":
        remove_expert(path, args.name)
        print(f"removed expert {args.name!r} from {path}")
    rows = expert_table(load_config(path))
    if getattr(args, "json", False):
        print(json.dumps(rows))
    elif args.action == "list":
        for row in rows:
            places = ", ".join(f"{task} #{rank}" for task, rank in row["tasks"].items()) or "-"
            star = "  (best average)" if row["best_average"] else ""
            print(f"{row['expert']:<20} model={row['model']:<20} {places}{star}")
    return 0


def _leaderboard_run(args: argparse.Namespace) -> int:
    from .builder import task_map_from_config
    from .models import build_models
    from .outcome_runner import read_mc_questions, run_outcomes
    from .pool import ExpertPool

    config = load_config(args.config)
    experts = [e.strip() for e in args.experts.split(",")] if args.experts else list(config.experts)
    unknown = [e for e in experts if e not in config.experts]
    if unknown:
        raise ConfigError(f"--experts: not in the config: {unknown}")
    models = build_models(config, {config.experts[e].model for e in experts})
    pool = ExpertPool({e: config.experts[e] for e in experts}, models, task_map_from_config(config))
    counts = run_outcomes(pool, read_mc_questions(args.questions, args.limit), args.out, experts=experts,
                          concurrency=args.concurrency, retries=args.retries)
    print(f"{args.out}: asked {counts['asked']}, already done {counts['skipped']}, failed {counts['failed']}")
    return 0 if counts["failed"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coe", description="Collaboration-of-Experts LLM router")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="route a question to the best expert and print its answer")
    ask.add_argument("question")
    ask.add_argument("--config", type=Path, help="YAML config (default: the embedded local config)")
    ask.add_argument("--option", action="append", help="a multiple-choice option (repeat for each option)")
    ask.add_argument("--json", action="store_true", help="print one JSON object with `answer` and `decision`")
    ask.add_argument("--thread", help="thread id for the checkpointer (default: a new one)")
    ask.add_argument("--mode", choices=["single", "plan", "auto"],
                     help="single-shot routing, expert planning, or let the planner decide (default: the config's)")
    ask.set_defaults(run=_ask)

    resume = commands.add_parser("resume", help="resume a run paused for human review of an unknown task")
    resume.add_argument("--thread", required=True)
    pick = resume.add_mutually_exclusive_group(required=True)
    pick.add_argument("--task")
    pick.add_argument("--expert")
    resume.add_argument("--config", type=Path)
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(run=_resume)

    serve = commands.add_parser("serve", help="serve the router as an OpenAI-compatible HTTP API (model `coe`)")
    serve.add_argument("--config", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-env", default="COE_API_TOKEN",
                       help="env var holding a bearer token; when it is set, requests must send it")
    serve.add_argument("--batch-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                       help="precision of micro-batched query embeddings (auto: bfloat16 on CPUs with AMX)")
    serve.set_defaults(run=_serve)

    experts = commands.add_parser("experts", help="list, add or remove experts in a config file (validated, atomic)")
    actions = experts.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--config", type=Path)
    listing.add_argument("--json", action="store_true")
    add = actions.add_parser("add")
    add.add_argument("name")
    add.add_argument("--model", required=True, help="a model defined in the config's `models`")
    add.add_argument("--tasks", help="comma-separated tasks this expert serves")
    add.add_argument("--rank", type=int, default=0, help="place in those tasks' ranked lists (0 = best)")
    add.add_argument("--description")
    add.add_argument("--style", choices=["cot", "plain"], default="cot")
    add.add_argument("--config", type=Path, required=True)
    remove = actions.add_parser("remove")
    remove.add_argument("name")
    remove.add_argument("--config", type=Path, required=True)
    experts.set_defaults(run=_experts)

    index = commands.add_parser("index", help="manage the labelled-example index").add_subparsers(dest="action", required=True)
    build = index.add_parser("build", help="encode labelled examples (questions.jsonl) into the config's collection")
    build.add_argument("--questions", type=Path, required=True)
    build.add_argument("--collection", help="collection name (default: the config's retriever.collection)")
    build.add_argument("--config", type=Path)
    build.set_defaults(run=_index_build)
    groups = add_eval_commands(commands)
    run = groups["leaderboard"].add_parser(
        "run", help="ask the configured experts a labelled multiple-choice set and record outcomes (resumable)")
    run.add_argument("--questions", type=Path, required=True, help="questions.jsonl with options and answer letters")
    run.add_argument("--config", type=Path)
    run.add_argument("--out", type=Path, required=True, help="correctness CSV (a journal is kept beside it)")
    run.add_argument("--experts", help="comma-separated experts (default: all)")
    run.add_argument("--concurrency", type=int, default=2)
    run.add_argument("--retries", type=int, default=2)
    run.add_argument("--limit", type=int, help="only the first N questions")
    run.set_defaults(run=_leaderboard_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .tracing import bound_trace_exit, flush_traces

    _quiet_offline_defaults()
    bound_trace_exit()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"coe: error: {exc}", file=sys.stderr)
        return 2
    finally:
        flush_traces()


if __name__ == "__main__":
    sys.exit(main())
