"""Reading a config file: YAML in, a validated RouterConfig out, or one ConfigError naming the file and field.

Every error is one line, `<file>: <field>: <what is wrong>` (or `<file>: line N: ...` where the file cannot be
parsed), so the CLI prints it as `coe: error: ...` without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from coe_router.config.schema import RouterConfig, TaskMapFile
from coe_router.defaults import UNKNOWN_TASK


def default_config_path() -> Path:
    """configs/local.yaml, wherever the install put it (it ships in the wheel as coe_router.configs)."""
    from importlib.resources import files

    return Path(str(files("coe_router.configs").joinpath("local.yaml")))


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the offending field."""


def one_line(text: str) -> str:
    """`text` with its line breaks (and runs of blanks around them) folded into single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


# Where pydantic puts a union member's tag into an error's location (`models.<name>.openai.model`): the position
# after the field and the tags; they are not fields of the file. Positional, so a model named `openai` stays.
_UNION_TAGS = {("models", 2): ("llamacpp", "openai"), ("task_map", 1): ("map", "file", "TaskMapFile")}


def field_location(error: dict) -> str:
    """Dotted field path of a pydantic error, without the union-member tags pydantic inserts (`llamacpp`, ...).

    A discriminated union whose tag is missing or wrong (`provider`) names the tag field itself.
    """
    loc = list(error["loc"])
    for (section, index), tags in _UNION_TAGS.items():
        if len(loc) > index and loc[0] == section and loc[index] in tags:
            del loc[index]
    parts = [one_line(str(part) if isinstance(part, (str, int)) else repr(part)) for part in loc]
    if parts and parts[-1].startswith("dict["):
        parts.pop()
    parts = [p for p in parts if not p.startswith(("dict[", "list["))]
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        parts.append(str((error.get("ctx") or {}).get("discriminator", "")).strip("'\""))
    return ".".join(p for p in parts if p) or "(top level)"


def validation_problems(exc: ValidationError) -> str:
    """Every problem of a pydantic error as `field: message`, joined on one line.

    A whole-config check already names its field (`experts.coder.model: no model named ...`), so its message is
    given as it is rather than under `(top level)`.
    """
    problems = []
    for error in exc.errors():
        message = one_line(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field (a typo?)"
        elif error.get("input", "") is None and message.startswith("Input should be"):
            message = f"no value given, i{message[1:]}"
        location = field_location(error)
        problems.append(message if location == "(top level)" and _names_a_field(message) else f"{location}: {message}")
    return "; ".join(dict.fromkeys(problems))


def _names_a_field(message: str) -> bool:
    head, colon, _ = message.partition(": ")
    return bool(colon) and " " not in head


class DuplicateKeyError(yaml.YAMLError):
    """The same key twice in one mapping: plain YAML keeps the last silently, which hides a mistake."""

    def __init__(self, field: str, line: int, first_line: int):
        super().__init__(f"line {line}: duplicate key {field!r} (first at line {first_line})")
        self.field, self.line, self.first_line = field, line, first_line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a key given twice, naming the dotted key and its line.

    Keys brought in by a merge (`<<: *anchor`) may be overridden, as YAML intends; only keys written in the same
    mapping are compared.
    """

    def construct_document(self, node):
        self._check_unique_keys(node, (), set())
        return super().construct_document(node)

    def _check_unique_keys(self, node, path: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:            # an alias met again (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        raise DuplicateKeyError(".".join((*path, key_node.value)), line, first[key])
                    first[key] = line
                    child = (*path, key_node.value)
                else:
                    child = path
                self._check_unique_keys(value_node, child, seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique_keys(item, (*path, str(index)), seen)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """A YAML error on one line, with the line (and column) where it was found."""
    if isinstance(exc, DuplicateKeyError):
        return str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}"
        problem = exc.problem or "syntax error"
        return one_line(f"not valid YAML: {where}{problem}{context + ')' if exc.context else ''}")
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[:exc.position]
        where = f"line {before.count(chr(10)) + 1}, column {len(before) - before.rfind(chr(10))}"
        character = f" (character #x{exc.character:04x})" if isinstance(exc.character, int) else ""
        return one_line(f"not valid YAML: {where}: {exc.reason}{character}")
    return f"not valid YAML: {one_line(exc)}"


def read_bytes(path: Path, fail: Callable[[str], ConfigError], kind: str) -> bytes:
    """The bytes of a file the config needs; a missing file, a folder or an unreadable file is `fail(why)`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail(f"is a folder, not a {kind}") from None
    except OSError as exc:
        raise fail(one_line(exc.strerror or exc)) from None


def read_yaml(path: Path) -> object:
    """The parsed document of `path`, or a ConfigError naming the file (and the line where the text is bad)."""
    raw = read_bytes(path, lambda why: ConfigError(f"{path}: {'config file not found' if why == 'file not found' else why}"),
                     "config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not valid YAML: line {line}: not UTF-8 text "
                          f"(byte 0x{raw[exc.start]:02x}: {exc.reason})") from None
    loader = None
    try:
        loader = UniqueKeyLoader(text)     # the reader checks the characters here already
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def load_config(path: str | Path | None = None) -> RouterConfig:
    """Read and validate a YAML config; `None` gives the embedded local default.

    Raises ConfigError naming the file and every bad field, so a typo is fixed in one go; the message is one line.
    """
    path = Path(path) if path is not None else default_config_path()
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty (expected a mapping with models, tasks, experts, "
                          "task_map at the top level)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping (models, tasks, experts, task_map), "
                          f"got {_KINDS.get(type(raw), type(raw).__name__)}")
    if "source" in raw:
        raise ConfigError(f"{path}: source: not a config field (the file's own path is used)")
    try:
        config = RouterConfig.model_validate({**raw, "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid config: {validation_problems(exc)}") from None
    return config


class LeaderboardMap(NamedTuple):
    """What a router reads from a leaderboard file: ranked experts per task, the best-average expert, and each
    expert's accuracy per task (`unknown`: over all tasks), for cost-aware choices."""

    ranking: dict[str, list[str]]
    best_average: str | None
    accuracy: dict[str, dict[str, float]]
    counts: dict[str, dict[str, int]]


class _LeaderboardFile(BaseModel):
    """The parts of a leaderboard JSON a task map reads; the rest (`best`, `count`, ...) is ignored."""

    model_config = ConfigDict(extra="ignore")

    ranking: dict[str, list[str]] | None = None
    overall_ranking: list[str] | None = None
    accuracy: dict[str, dict[str, float | None]] | None = None
    overall_accuracy: dict[str, float | None] | None = None
    count: dict[str, dict[str, int | None]] | None = None
    overall_count: dict[str, int | None] | None = None


def load_task_map_file(config: RouterConfig, task_map: TaskMapFile) -> LeaderboardMap:
    """The task map of a leaderboard JSON (`coe leaderboard build`).

    Only experts the config defines are kept, so a leaderboard of many models can drive a config that has a few;
    a leaderboard that ranks none of them is refused. Errors name the config file and `task_map.from`.
    """
    leaderboard_path = config.resolve_path(task_map.from_)
    where = f"{config.source}: task_map.from" if config.source is not None else "task_map.from"

    def fail(problem: str) -> ConfigError:
        return ConfigError(one_line(f"{where}: {problem}"))

    raw = read_bytes(leaderboard_path, lambda why: fail(f"cannot read leaderboard {leaderboard_path}: {why}"),
                     "JSON file")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise fail(f"cannot read leaderboard {leaderboard_path}: not valid JSON: line {exc.lineno}, "
                   f"column {exc.colno}: {exc.msg}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise fail(f"cannot read leaderboard {leaderboard_path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"{leaderboard_path}: expected a leaderboard object, got {type(data).__name__}")
    try:
        board = _LeaderboardFile.model_validate(data)
    except ValidationError as exc:
        raise fail(f"{leaderboard_path}: not a leaderboard: {validation_problems(exc)}") from None
    ranking = {task: [name for name in ranked if name in config.experts]
               for task, ranked in (board.ranking or {}).items()}
    overall = [name for name in board.overall_ranking or [] if name in config.experts]
    if not overall and not any(ranking.values()):
        listed = sorted({name for ranked in (board.ranking or {}).values() for name in ranked}
                        | set(board.overall_ranking or []))
        raise fail(f"{leaderboard_path}: ranks none of the config's experts {sorted(config.experts)} "
                   f"(it ranks {listed[:10]}{' ...' if len(listed) > 10 else ''})")
    per_task = {**(board.accuracy or {}), UNKNOWN_TASK: board.overall_accuracy or {}}
    accuracy = {task: {name: float(value) for name, value in scores.items() if name in config.experts and value is not None}
                for task, scores in per_task.items()}
    per_task_counts = {**(board.count or {}), UNKNOWN_TASK: board.overall_count or {}}
    counts = {task: {name: int(value) for name, value in numbers.items() if name in config.experts and value is not None}
              for task, numbers in per_task_counts.items()}
    return LeaderboardMap({task: ranked for task, ranked in ranking.items() if ranked}, overall[0] if overall else None,
                          {task: scores for task, scores in accuracy.items() if scores},
                          {task: numbers for task, numbers in counts.items() if numbers})
