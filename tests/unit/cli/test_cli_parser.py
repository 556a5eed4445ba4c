"""The `coe` parser: every command group parses, `coe eval` keeps only generic evaluation, and the package runs
with `python -m coe_router.cli` (and `python -m coe_router.cli.main`) without loading any handler's heavy imports."""

import subprocess
import sys
from pathlib import Path

import pytest

from coe_router.cli import ask, evaluate, experts, index, leaderboard, serve
from coe_router.cli.main import build_parser, main
from coe_router.defaults import ROUTER_TAG, RUN_NAME
from coe_router.evaluation import DEFAULT_CLASSIFIER_K

REPO = Path(__file__).resolve().parents[3]

COMMANDS = [
    ["ask"],
    ["resume"],
    ["index", "build"],
    ["serve"],
    ["experts", "list"],
    ["experts", "add"],
    ["experts", "remove"],
    ["leaderboard", "run"],
    ["leaderboard", "build"],
    ["leaderboard", "show"],
    ["leaderboard", "plot"],
    ["eval", "split"],
    ["eval", "classifier"],
    ["eval", "replay"],
    ["eval", "curve"],
    ["eval", "import"],
    ["eval", "import-llmrouter"],
]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS + [["index"], ["experts"], ["leaderboard"], ["eval"]], ids=" ".join)
def test_every_command_has_help(argv, capsys):
    assert f"usage: coe {' '.join(argv)}" in _help(argv, capsys)


def test_top_level_help_lists_every_group(capsys):
    text = _help([], capsys)
    for group in ("ask", "resume", "serve", "experts", "index", "leaderboard", "eval"):
        assert group in text


def test_eval_is_generic_evaluation_only(capsys):
    text = _help(["eval"], capsys)
    for action in ("split", "classifier", "replay", "curve", "import", "import-llmrouter"):
        assert action in text
    assert "report" not in text
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["eval", "report"])
    assert done.value.code == 2


def test_leaderboard_has_run_build_show_plot(capsys):
    text = _help(["leaderboard"], capsys)
    assert all(action in text for action in ("run", "build", "show", "plot"))


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["ask", "hi", "--option", "a", "--option", "b", "--mode", "plan", "--json"], ask),
        (["resume", "--thread", "t1", "--task", "math"], ask),
        (["index", "build", "--questions", "q.jsonl", "--collection", "c"], index),
        (["serve", "--port", "9000", "--batch-dtype", "float32"], serve),
        (["experts", "add", "poet", "--model", "m", "--config", "c.yaml"], experts),
        (["leaderboard", "run", "--questions", "q.jsonl", "--out", "o.csv", "--limit", "3"], leaderboard),
        (["leaderboard", "build", "--table", "t.csv", "--out", "l.json"], leaderboard),
        (["leaderboard", "show", "l.json", "--top", "2"], leaderboard),
        (["leaderboard", "plot", "l.json", "--out", "r.png"], leaderboard),
        (["eval", "split", "--questions", "q", "--outcomes", "o", "--out", "s"], evaluate),
        (["eval", "classifier", "--train-questions", "a", "--test-questions", "b", "--k", "3"], evaluate),
        (
            [
                "eval",
                "replay",
                "--train-questions",
                "a",
                "--train-outcomes",
                "b",
                "--test-questions",
                "c",
                "--test-outcomes",
                "d",
                "--knn-k",
                "5",
                "--tune",
            ],
            evaluate,
        ),
        (["eval", "import-llmrouter", "--scores", "s.jsonl", "--out", "o"], evaluate),
        (["eval", "import", "--long", "l.csv", "--score-range", "0,10", "--clip", "--out", "o"], evaluate),
        (
            [
                "eval",
                "curve",
                *[f"--{n}=x" for n in ("train-questions", "train-outcomes", "test-questions", "test-outcomes")],
                "--prices",
                "p.json",
                "--weights",
                "0,0.1",
                "--out",
                "c.png",
            ],
            evaluate,
        ),
    ],
)
def test_commands_dispatch_to_their_group_module(argv, module):
    args = build_parser().parse_args(argv)
    assert callable(args.run) and args.run.__module__ == module.__name__


def test_flags_keep_their_defaults():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.token_env, args.batch_dtype) == ("127.0.0.1", 8000, "COE_API_TOKEN", "auto")
    args = build_parser().parse_args(
        [
            "eval",
            "replay",
            *[f"--{n}=x" for n in ("train-questions", "train-outcomes", "test-questions", "test-outcomes")],
        ]
    )
    assert (args.router, args.classifier, args.k, args.knn_k, args.prior, args.missing) == (
        "all",
        "knn",
        DEFAULT_CLASSIFIER_K,
        100,
        "task",
        "drop",
    )
    classifier = build_parser().parse_args(["eval", "classifier", "--train-questions=a", "--test-questions=b"])
    assert classifier.k == DEFAULT_CLASSIFIER_K == 5
    assert build_parser().parse_args(["eval", "classifier", "--train-questions=a", "--test-questions=b",
                                      "--k", "auto"]).k == "auto"
    args = build_parser().parse_args(["leaderboard", "run", "--questions", "q", "--out", "o"])
    assert (args.concurrency, args.retries, args.limit) == (2, 2, None)


def test_cli_runs_are_named_and_tagged_from_the_shared_defaults():
    run = ask._run_config("thread-1")
    assert run["run_name"] == RUN_NAME and run["tags"] == [ROUTER_TAG, "cli"]
    assert run["configurable"]["thread_id"] == "thread-1"
    assert ask._run_config(None)["configurable"]["thread_id"]


def test_missing_file_is_a_clean_error(tmp_path, capsys):
    assert main(["leaderboard", "show", str(tmp_path / "missing.json")]) == 2
    assert "coe: error:" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["coe_router.cli", "coe_router.cli.main"])
def test_python_dash_m_help(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: coe" in done.stdout and "leaderboard" in done.stdout


def test_building_the_parser_loads_no_handler_dependencies():
    heavy = [
        "uvicorn",
        "matplotlib",
        "coe_router.serve.app",
        "coe_router.evaluation.replay",
        "coe_router.evaluation.leaderboard",
        "coe_router.evaluation.runner",
        "coe_router.config.edit",
    ]
    code = (
        "import sys; from coe_router.cli.main import build_parser; build_parser(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_replay_and_a_config_without_knn_settings_use_the_same_knn_router(tmp_path):
    """What `coe eval replay` evaluates by default is what `router: {kind: knn}` deploys (they once differed:
    prior_strength 20 vs 10, task_k 5 vs 10, 5% of picks)."""
    from coe_router.config.schema import RouterSpec

    args = build_parser().parse_args(
        ["eval", "replay", *[f"--{n}=x" for n in ("train-questions", "train-outcomes", "test-questions", "test-outcomes")]])
    deployed = RouterSpec(kind="knn", outcomes="o.csv", questions="q.jsonl").knn
    assert evaluate._knn_params(args, DEFAULT_CLASSIFIER_K) == deployed


def test_replay_writes_the_settings_it_evaluated_as_a_config_section(tmp_path):
    import yaml

    from coe_router.config.schema import RouterSpec
    from coe_router.routing.query_router import KnnRouterParams

    tuned = KnnRouterParams(k=40, weighting="softmax", prior="global", prior_strength=3.0, task_k=7)
    out = tmp_path / "router.yaml"
    evaluate._write_router_settings(str(out), tuned)
    section = yaml.safe_load(out.read_text())["router"]
    assert RouterSpec(kind="knn", outcomes="o.csv", questions="q.jsonl", **section).knn == tuned
