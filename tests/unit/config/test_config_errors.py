"""Broken configs a user could write: each gives one ConfigError of one line naming the file and the field.

Every case starts from the valid CONFIG of tests/unit/conftest.py. A case whose error only shows when the task map
is read (a leaderboard file) is loaded and then passed to `task_map_from_config`.
"""

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import yaml

from coe_router import ConfigError, load_config, task_map_from_config
from tests.unit.conftest import CONFIG, write_config

VALID_YAML = yaml.safe_dump(CONFIG, sort_keys=False)


@dataclass
class Case:
    """A broken config: `field` is the dotted field the message must name (or, for a file that cannot be parsed,
    a fragment such as `line 3` that says where)."""

    id: str
    field: str
    overrides: dict = field(default_factory=dict)
    text: str | bytes | None = None                     # the whole file, instead of CONFIG + overrides
    setup: Callable | None = None                      # (tmp_path) -> path to load, for files that are not YAML text
    files: dict = field(default_factory=dict)          # extra files next to the config (a leaderboard, ...)
    build: bool = False                                # the error shows when the task map is read


def without(key: str) -> dict:
    return {k: v for k, v in CONFIG.items() if k != key}


def changed(path: str, value) -> dict:
    """CONFIG with the dotted `path` set to `value`, as a whole-file text (the sections it touches replaced)."""
    data = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def insert_after(anchor: str, line: str) -> str:
    """VALID_YAML with `line` inserted after the first line equal to `anchor`."""
    lines = VALID_YAML.splitlines(keepends=True)
    index = next(i for i, text in enumerate(lines) if text.rstrip("\n") == anchor)
    return "".join(lines[:index + 1] + [line + "\n"] + lines[index + 1:])


def folder(tmp_path):
    (tmp_path / "router.yaml").mkdir()
    return tmp_path / "router.yaml"


def missing(tmp_path):
    return tmp_path / "absent.yaml"


LEADERBOARD = {"task_map": {"from": "leaderboard.json"}}

CASES = [
    # The file itself.
    Case("empty file", "empty", text=""),
    Case("only comments", "empty", text="# models: to come\n"),
    Case("list at top level", "top level", text="- models\n- tasks\n"),
    Case("scalar at top level", "top level", text="42\n"),
    Case("unclosed flow list", "line 1", text="models: [unclosed\n"),
    Case("tab indentation", "line 3", text="models:\n  m:\n\tprovider: openai\n"),
    Case("bad indentation", "line 3", text="tasks:\n  math: algebra\n code: programming\n"),
    Case("non-UTF-8 bytes", "line 4", text=VALID_YAML.encode()[:40] + b"\n\xff\xfe caf\xe9\n"),
    Case("control character", "line 1", text="tasks: {math: \"a\"}\x07\n"),
    Case("path is a folder", "folder", setup=folder),
    Case("missing file", "not found", setup=missing),
    # Duplicated keys, which YAML would otherwise resolve silently to the last one.
    Case("two experts sections", "experts", text=VALID_YAML + "experts:\n  coder: {model: code-model}\n"),
    Case("a task listed twice", "tasks.math", text=insert_after("tasks:", "  math: twice")),
    Case("a model field twice", "models.math-model.model", text=insert_after("  math-model:", "    model: other")),
    Case("duplicate in a flow mapping", "classifier.kind", text=VALID_YAML.replace(
        "classifier:\n  kind: knn\n", "classifier: {kind: knn, kind: llm}\n")),
    # Sections missing, empty or of the wrong shape.
    Case("experts: {}", "experts", overrides={"experts": {}}),
    Case("models: {}", "models", overrides={"models": {}}),
    Case("tasks: {}", "tasks", overrides={"tasks": {}}),
    Case("experts: with no value", "experts", overrides={"experts": None}),
    Case("experts as a list", "experts", overrides={"experts": ["coder", "generalist"]}),
    Case("no tasks section", "tasks", text=yaml.safe_dump(without("tasks"), sort_keys=False)),
    Case("model as a string", "models.math-model", overrides={"models": {**CONFIG["models"], "math-model": "qwen"}}),
    Case("task description a list", "tasks.math", overrides={"tasks": {**CONFIG["tasks"], "math": ["algebra"]}}),
    Case("task named unknown", "tasks.unknown", overrides={"tasks": {**CONFIG["tasks"], "unknown": "reserved"}}),
    # Names that point nowhere.
    Case("expert naming a missing model", "experts.coder.model",
         overrides={"experts": {**CONFIG["experts"], "coder": {"model": "codex"}}}),
    Case("task_map naming a missing expert", "task_map.math", overrides={"task_map": {"math": "nobody"}}),
    Case("task_map naming a missing task", "task_map.astrology", overrides={"task_map": {"astrology": "coder"}}),
    Case("task_map entry empty", "task_map.math", overrides={"task_map": {"math": []}}),
    Case("default_expert missing", "default_expert", overrides={"default_expert": "oracle"}),
    Case("classifier model missing", "classifier.model", overrides={"classifier": {"kind": "llm", "model": "gpt-9"}}),
    Case("classifier llm without model", "classifier.model", overrides={"classifier": {"kind": "llm"}}),
    Case("planner model missing for plan", "planner.model", overrides={"mode": "plan"}),
    Case("planner naming a missing model", "planner.model", overrides={"planner": {"model": "gpt-9"}}),
    # task_map from a leaderboard file: read when the task map is built.
    Case("leaderboard file missing", "task_map.from", overrides=LEADERBOARD, build=True),
    Case("leaderboard a JSON list", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": json.dumps(["coder", "generalist"])}),
    Case("leaderboard invalid JSON", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": '{"ranking": {"math": ["coder"]'}),
    Case("leaderboard not UTF-8", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": b'{"ranking": {"\xff": []}}'}),
    Case("leaderboard of other experts", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": json.dumps({"ranking": {"math": ["gpt-x"]}, "overall_ranking": ["gpt-x"]})}),
    Case("leaderboard ranking a list", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": json.dumps({"ranking": ["coder"], "overall_ranking": ["coder"]})}),
    Case("leaderboard accuracy a string", "task_map.from", overrides=LEADERBOARD, build=True,
         files={"leaderboard.json": json.dumps({"ranking": {"math": ["coder"]}, "accuracy": {"math": {"coder": "high"}}})}),
    Case("leaderboard path a folder", "task_map.from", overrides={"task_map": {"from": "."}}, build=True),
    Case("task_map from with another key", "task_map.math", overrides={"task_map": {"from": "lb.json", "math": "coder"}}),
    # Wrong types and out-of-range values.
    Case("k is a word", "retriever.k", overrides={"retriever": {"k": "five"}}),
    Case("fanout 0", "fanout", overrides={"fanout": 0}),
    Case("threshold 2", "classifier.threshold", overrides={"classifier": {"kind": "hybrid", "model": "general-model",
                                                                          "threshold": 2}}),
    Case("max_query_chars -1", "limits.max_query_chars", overrides={"limits": {"max_query_chars": -1}}),
    Case("max_steps 100", "planner.max_steps", overrides={"planner": {"max_steps": 100}}),
    Case("mode unknown", "mode", overrides={"mode": "turbo"}),
    Case("negative price", "models.math-model.price_per_1m_tokens",
         text=yaml.safe_dump(changed("models.math-model.price_per_1m_tokens", -1.5), sort_keys=False)),
    Case("base_url not http", "models.math-model.base_url",
         text=yaml.safe_dump(changed("models.math-model.base_url", "ftp://host"), sort_keys=False)),
    Case("use_examples not a boolean", "classifier.use_examples", overrides={"classifier": {"use_examples": "often"}}),
    # Unknown keys.
    Case("expert: instead of experts:", "expert",
         text=yaml.safe_dump({**without("experts"), "expert": CONFIG["experts"]}, sort_keys=False)),
    Case("thresold typo", "classifier.thresold", overrides={"classifier": {"kind": "knn", "thresold": 0.5}}),
    Case("expert field typo", "experts.coder.modle",
         overrides={"experts": {**CONFIG["experts"], "coder": {"model": "code-model", "modle": "x"}}}),
    Case("source set by hand", "source", overrides={"source": "/elsewhere.yaml"}),
    # Models.
    Case("llamacpp with path and package", "models.local",
         overrides={"models": {**CONFIG["models"], "local": {"provider": "llamacpp", "path": "m.gguf",
                                                             "package": "gt_model"}}}),
    Case("llamacpp with neither", "models.local", overrides={"models": {**CONFIG["models"],
                                                                        "local": {"provider": "llamacpp"}}}),
    Case("openai without model", "models.math-model.model",
         overrides={"models": {**CONFIG["models"], "math-model": {"provider": "openai"}}}),
    Case("model named like a provider, no model", "models.openai.model",
         overrides={"models": {**CONFIG["models"], "openai": {"provider": "openai"}}}),
    Case("task_map a file name", "task_map", overrides={"task_map": "leaderboard.json"}),
    Case("task_map entry a number", "task_map.file", overrides={"task_map": {"file": 5}}),
    Case("unknown provider", "models.math-model.provider",
         overrides={"models": {**CONFIG["models"], "math-model": {"provider": "carrier-pigeon"}}}),
    Case("no provider", "models.math-model.provider",
         overrides={"models": {**CONFIG["models"], "math-model": {"model": "qwen-math"}}}),
    # Classifier rules.
    Case("rules kind without rules", "classifier.rules", overrides={"classifier": {"kind": "rules"}}),
    Case("invalid regex in rules", "classifier.rules.math.1",
         overrides={"classifier": {"kind": "rules", "rules": {"math": ["\\d+", "(unclosed"]}}}),
    Case("a lookahead RE2 cannot run in linear time", "classifier.rules.math.0",
         overrides={"classifier": {"kind": "rules", "rules": {"math": ["(?=integral)"]}}}),
    Case("rules for a missing task", "classifier.rules.astrology",
         overrides={"classifier": {"kind": "rules", "rules": {"astrology": ["stars"]}}}),
    # Persistence.
    Case("review_unknown without checkpointer", "persistence.review_unknown",
         overrides={"persistence": {"review_unknown": True}}),
    Case("review_unknown in plan mode", "persistence.review_unknown",
         overrides={"mode": "plan", "planner": {"model": "general-model"},
                    "persistence": {"review_unknown": True, "checkpointer": "memory"}}),
    Case("checkpointer unknown", "persistence.checkpointer", overrides={"persistence": {"checkpointer": "redis"}}),
]


def write_case(tmp_path, case: Case):
    for name, content in case.files.items():
        target = tmp_path / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.setup is not None:
        return case.setup(tmp_path)
    if case.text is not None:
        path = tmp_path / "router.yaml"
        path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
        return path
    return write_config(tmp_path, **case.overrides)


def names_field(message: str, name: str) -> bool:
    """`name` appears as a whole dotted field (not as the start of a longer one)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", message) is not None


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_config_gives_one_line_naming_file_and_field(tmp_path, case):
    path = write_case(tmp_path, case)
    with pytest.raises(ConfigError) as error:
        config = load_config(path)
        if case.build:
            task_map_from_config(config)
    assert type(error.value) is ConfigError
    message = str(error.value)
    assert len(message.splitlines()) == 1 and message.strip() == message, message
    assert message.startswith(f"{path}: "), message
    assert names_field(message, case.field), f"{case.field!r} not named in: {message}"


def test_build_cases_load_cleanly_and_fail_only_when_the_map_is_read(tmp_path):
    for case in (case for case in CASES if case.build):
        folder = tmp_path / case.id.replace(" ", "-")
        folder.mkdir()
        config = load_config(write_case(folder, case))
        with pytest.raises(ConfigError):
            task_map_from_config(config)


def test_duplicate_key_names_the_line(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(VALID_YAML + "experts:\n  coder: {model: code-model}\n", encoding="utf-8")
    line = VALID_YAML.count("\n") + 1
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: line {line}: duplicate key 'experts' (first at line 18)"


def test_merge_keys_may_override_merged_values(tmp_path):
    text = VALID_YAML.replace("models:\n", "shared: &shared\n  provider: openai\n  base_url: http://127.0.0.1:9/v1\n"
                              "models:\n", 1)
    text = text.replace("  math-model:\n    provider: openai\n", "  math-model:\n    <<: *shared\n    provider: openai\n")
    path = tmp_path / "router.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:    # `shared` is not a section; the merge itself is not a duplicate
        load_config(path)
    assert "shared" in str(error.value) and "duplicate" not in str(error.value)


def test_cli_prints_the_one_line(tmp_path, capsys):
    from coe_router.cli.main import main

    path = write_config(tmp_path, experts={})
    assert main(["experts", "list", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coe: error: {path}: ") and err.count("\n") == 1 and "experts" in err


@pytest.mark.parametrize("case", [case for case in CASES if case.id in {
    "two experts sections", "unclosed flow list", "path is a folder", "missing file", "list at top level"}],
    ids=lambda case: case.id)
def test_editing_a_broken_file_gives_the_same_one_line(tmp_path, case):
    from coe_router.config.edit import add_expert

    path = write_case(tmp_path, case)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ConfigError) as error:
        add_expert(path, "poet", "general-model", [])
    message = str(error.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: "), message
    assert (path.read_bytes() if path.is_file() else None) == before
