"""The `coe` command line: assembles the command groups and runs the chosen handler."""

from __future__ import annotations

import argparse
import os
import sys

from coe_router.cli import ask, evaluate, experts, index, leaderboard, serve
from coe_router.config import ConfigError


def _quiet_offline_defaults() -> None:
    """Nothing at run time may reach the network: no hub lookups, no Chroma telemetry."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coe", description="Collaboration-of-Experts LLM router")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (ask, serve, experts, index, leaderboard, evaluate):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from coe_router.tracing import bound_trace_exit, flush_traces

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
