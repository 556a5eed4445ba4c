"""`coe ask` and `coe resume`: route a question (or resume a paused run) and print the result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _run_config(thread: str | None) -> dict:
    import uuid

    from coe_router.defaults import ROUTER_TAG, RUN_NAME

    return {"run_name": RUN_NAME, "tags": [ROUTER_TAG, "cli"],
            "configurable": {"thread_id": thread or uuid.uuid4().hex}}


def _ask(args: argparse.Namespace) -> int:
    from coe_router.builder import build_graph
    from coe_router.config import load_config

    started = time.perf_counter()
    config = load_config(args.config)
    if args.mode:
        config = config.replace(mode=args.mode)
    graph = build_graph(config, progress=not args.json)
    run = _run_config(args.thread)
    result = graph.invoke({"query": args.question, "options": args.option or None}, run)
    return print_result(result, run, args.json, started)


def _resume(args: argparse.Namespace) -> int:
    from langgraph.types import Command

    from coe_router.builder import build_graph
    from coe_router.config import load_config
    from coe_router.nodes.review import move_pause_to_review

    started = time.perf_counter()
    graph = build_graph(load_config(args.config))
    run = _run_config(args.thread)
    state = graph.get_state(run)
    if not any(task.interrupts for task in state.tasks) and state.next:  # left mid-run by a crash: continue it
        return print_result(graph.invoke(None, run), run, args.json, started)
    if not (args.task or args.expert):
        raise SystemExit(f"coe: error: thread {args.thread} is paused for review: give --task or --expert")
    answer = {"task": args.task} if args.task else {"expert": args.expert}
    move_pause_to_review(graph, run, state)
    return print_result(graph.invoke(Command(resume=answer), run), run, args.json, started)


def print_result(result: dict, run: dict, as_json: bool, started: float) -> int:
    """Print a routed answer (text or one JSON object); 3 when the run paused for human review."""
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


def add_commands(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("ask", help="route a question to the best expert and print its answer")
    ask.add_argument("question")
    ask.add_argument("--config", type=Path, help="YAML config (default: the embedded local config)")
    ask.add_argument("--option", action="append", help="a multiple-choice option (repeat for each option)")
    ask.add_argument("--json", action="store_true", help="print one JSON object with `answer` and `decision`")
    ask.add_argument("--thread", help="thread id for the checkpointer (default: a new one)")
    ask.add_argument("--mode", choices=["single", "plan", "auto"],
                     help="single-shot routing, expert planning, or let the planner decide (default: the config's)")
    ask.set_defaults(run=_ask)

    resume = commands.add_parser("resume", help="resume a run paused for human review of an unknown task (or "
                                                "continue one a crash left mid-run: no --task/--expert needed)")
    resume.add_argument("--thread", required=True)
    pick = resume.add_mutually_exclusive_group()
    pick.add_argument("--task")
    pick.add_argument("--expert")
    resume.add_argument("--config", type=Path)
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(run=_resume)
