"""Reading a config file: YAML in, a validated RouterConfig out, or one ConfigError naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import yaml
from pydantic import ValidationError

from coe_router.config.schema import RouterConfig, TaskMapFile
from coe_router.defaults import UNKNOWN_TASK


def default_config_path() -> Path:
    """configs/local.yaml, wherever the install put it (it ships in the wheel as coe_router.configs)."""
    from importlib.resources import files

    return Path(str(files("coe_router.configs").joinpath("local.yaml")))


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the offending field."""


def field_location(error: dict) -> str:
    """Dotted field path of a pydantic error, without the union-member tags pydantic inserts (`llamacpp`, ...)."""
    parts = [str(part) for part in error["loc"] if part not in ("llamacpp", "openai", "TaskMapFile")]
    if parts and parts[-1].startswith("dict["):
        parts.pop()
    return ".".join(p for p in parts if not p.startswith(("dict[", "list["))) or "(top level)"


def load_config(path: str | Path | None = None) -> RouterConfig:
    """Read and validate a YAML config; `None` gives the embedded local default.

    Raises ConfigError naming the file and every bad field, so a typo is fixed in one go.
    """
    path = Path(path) if path is not None else default_config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = RouterConfig.model_validate({**raw, "source": path.resolve()})
    except ValidationError as exc:
        problems = "; ".join(f"{field_location(e)}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid config: {problems}") from None
    return config


class LeaderboardMap(NamedTuple):
    """What a router reads from a leaderboard file: ranked experts per task, the best-average expert, and each
    expert's accuracy per task (`unknown`: over all tasks), for cost-aware choices."""

    ranking: dict[str, list[str]]
    best_average: str | None
    accuracy: dict[str, dict[str, float]]


def load_task_map_file(config: RouterConfig, task_map: TaskMapFile) -> LeaderboardMap:
    """The task map of a leaderboard JSON (`coe leaderboard build`).

    Only experts the config defines are kept, so a leaderboard of many models can drive a config that has a few.
    """
    leaderboard_path = config.resolve_path(task_map.from_)
    try:
        data = json.loads(leaderboard_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"task_map.from: cannot read leaderboard {leaderboard_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"task_map.from: {leaderboard_path}: expected a leaderboard object, got {type(data).__name__}")
    ranking = {
        task: [name for name in ranked if name in config.experts]
        for task, ranked in (data.get("ranking") or {}).items()
    }
    overall = [name for name in data.get("overall_ranking") or [] if name in config.experts]
    per_task = {**(data.get("accuracy") or {}), UNKNOWN_TASK: data.get("overall_accuracy") or {}}
    accuracy = {task: {name: float(value) for name, value in scores.items() if name in config.experts and value is not None}
                for task, scores in per_task.items() if isinstance(scores, dict)}
    return LeaderboardMap({task: ranked for task, ranked in ranking.items() if ranked}, overall[0] if overall else None,
                          {task: scores for task, scores in accuracy.items() if scores})
