"""Safe edits of a config file (push/pop of experts from the command line).

The file is read with ruamel.yaml so comments and key order survive, the edited document is validated as a whole
before anything is written, and the write is atomic (a temporary file in the same folder, then os.replace): a
failed or invalid edit leaves the original file untouched.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from coe_router.config import UNKNOWN_TASK, ConfigError, RouterConfig
from coe_router.config.load import read_yaml, validation_problems
from coe_router.routing.task_map import task_map_from_config


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def edit_config(path: str | Path, change: Callable[[dict], None]) -> RouterConfig:
    """Apply `change` to the parsed document, validate the result, and write it back atomically."""
    path = Path(path)
    yaml = _yaml()
    if not isinstance(read_yaml(path), dict):  # one-line errors for a missing, unreadable or malformed file
        raise ConfigError(f"{path}: (top level): expected a mapping (models, tasks, experts, task_map)")
    document = yaml.load(path.read_text(encoding="utf-8"))
    change(document)
    try:
        config = RouterConfig.model_validate({**_plain(document), "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(f"{path}: the edit would make the config invalid, nothing written: "
                          f"{validation_problems(exc)}") from None
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(buffer.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return config


def _flow_list(items: list) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _plain(node):
    """ruamel's commented containers as plain dicts and lists, for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def add_expert(path: str | Path, name: str, model: str, tasks: list[str], rank: int = 0,
               description: str = "", style: str = "cot") -> RouterConfig:
    def change(doc: dict) -> None:
        if not isinstance(doc.get("experts"), dict):  # `experts:` left empty
            doc["experts"] = {}
        if name in doc["experts"]:
            raise ConfigError(f"{path}: expert {name!r} already exists")
        entry = {"model": model}
        if description:
            entry["description"] = description
        if style != "cot":
            entry["style"] = style
        doc["experts"][name] = entry
        task_map = doc.get("task_map")
        if not isinstance(task_map, dict):
            task_map = doc["task_map"] = {}
        if tasks and "from" in task_map:
            raise ConfigError(f"{path}: task_map comes from a leaderboard file; edit that instead of --tasks")
        for task in tasks:
            ranked = task_map.get(task)
            if ranked is None or isinstance(ranked, str):
                task_map[task] = ranked = _flow_list([ranked] if ranked else [])
            ranked.insert(min(rank, len(ranked)), name)  # in place: the list keeps its style and comments

    return edit_config(path, change)


def remove_expert(path: str | Path, name: str) -> RouterConfig:
    def change(doc: dict) -> None:
        experts = doc.get("experts") if isinstance(doc.get("experts"), dict) else {}
        if name not in experts:
            raise ConfigError(f"{path}: no expert named {name!r} (experts: {sorted(experts)})")
        if len(experts) == 1:
            raise ConfigError(f"{path}: {name!r} is the last expert; a router needs at least one")
        del experts[name]
        task_map = doc.get("task_map") if isinstance(doc.get("task_map"), dict) else {}
        if "from" not in task_map:
            for task in list(task_map):
                ranked = task_map[task]
                if ranked == name or (not isinstance(ranked, str) and list(ranked) == [name]):
                    del task_map[task]
                elif not isinstance(ranked, str) and name in ranked:
                    ranked.remove(name)
        if doc.get("default_expert") == name:
            del doc["default_expert"]

    return edit_config(path, change)


def expert_table(config: RouterConfig) -> list[dict]:
    """Each expert with its model and where it ranks in the task map."""
    task_map = task_map_from_config(config)
    ranking = task_map.ranking
    rows = []
    for name, spec in config.experts.items():
        places = {task: ranked.index(name) + 1 for task, ranked in ranking.items() if name in ranked}
        rows.append({"expert": name, "model": spec.model, "style": spec.style,
                     "tasks": {t: r for t, r in places.items() if t != UNKNOWN_TASK},
                     "best_average": task_map.default_expert == name})
    return rows
