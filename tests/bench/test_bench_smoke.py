"""A smoke run of `python -m bench` on tiny sizes, as a user runs it (a subprocess from the repository root), so a
benchmark broken by a change fails the default test run instead of rotting (its figures are not asserted: they
are the benchmark's to report). The MMLU-Pro data is a 400-question slice of the repository's copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coe_router.jsonl import read_jsonl
from reports.data import find_data_dir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TINY = ["--train", "150", "--queries", "12", "--hybrid-queries", "2", "--llm-queries", "1", "--graph-queries", "6",
        "--rounds", "1", "--per-round", "8", "--concurrency", "4", "--scaling", "300", "--scaling-queries", "5",
        "--scaling-chroma-max", "300", "--knn-sizes", "all,600", "--knn-queries", "5", "--knn-fresh-starts", "1"]
SKIPPED = "peer,rss,faults,service_cost,memory,replicas"  # each has its own smoke test or needs minutes


def _slice(folder: Path, questions: int = 400) -> Path:
    source = find_data_dir() / "mmlu-pro-model-outputs"
    rows = [row for _, row in read_jsonl(source / "questions.jsonl")][:questions]
    keep = {str(row["question_id"]) for row in rows}
    folder.mkdir()
    (folder / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    lines = (source / "correctness.csv").read_text(encoding="utf-8").splitlines()
    (folder / "correctness.csv").write_text(
        "\n".join([lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in keep)]) + "\n", encoding="utf-8")
    return folder


def test_python_dash_m_bench_runs_every_section_on_tiny_sizes(tmp_path):
    env = {**os.environ, "COE_BENCH_DATA": str(_slice(tmp_path / "mmlu")), "COE_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", *TINY, "--skip", SKIPPED, "--json", str(report)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "decision" in done.stdout or "routing" in done.stdout.lower()  # the report's table was printed
    results = json.loads(report.read_text())
    for section in ("routing", "graph", "throughput", "scaling", "leaderboard", "knn_scale", "metrics"):
        assert results.get(section), (section, sorted(results))
    for row in results["knn_scale"].values():  # the target's ratio and its question-by-question companions
        assert row["ratio_p50"] > 0 and row["paired_ratio_p50"] > 0 and "above_floor_p50_ms" in row
