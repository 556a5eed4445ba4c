"""`coe experts list|add|remove`: validated, atomic edits of a config file's experts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _experts(args: argparse.Namespace) -> int:
    from coe_router.config import default_config_path, load_config
    from coe_router.config.edit import add_expert, expert_table, remove_expert

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


def add_commands(commands: argparse._SubParsersAction) -> None:
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
