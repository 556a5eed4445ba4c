"""`coe index build`: encode labelled examples into the config's Chroma collection."""

from __future__ import annotations

import argparse
from pathlib import Path


def _index_build(args: argparse.Namespace) -> int:
    from coe_router.builder import open_example_store
    from coe_router.config import load_config
    from coe_router.retrieval.store import read_examples

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


def add_commands(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="manage the labelled-example index").add_subparsers(dest="action", required=True)
    build = index.add_parser("build", help="encode labelled examples (questions.jsonl) into the config's collection")
    build.add_argument("--questions", type=Path, required=True)
    build.add_argument("--collection", help="collection name (default: the config's retriever.collection)")
    build.add_argument("--config", type=Path)
    build.set_defaults(run=_index_build)
