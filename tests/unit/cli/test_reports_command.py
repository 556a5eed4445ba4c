"""`python -m reports` (the docs/RESULTS.md generator at the repository root, not installed): its command line,
the MMLU-Pro model metadata file, and the fast DevOps-Eval section against the committed docs/RESULTS.md."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"


def test_python_dash_m_reports_help():
    done = subprocess.run(
        [sys.executable, "-m", "reports", "--help"], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--out", "--data", "--cache-dir", "--seeds", "--no-ablation"):
        assert flag in done.stdout


def test_mmlu_pro_model_metadata_gives_the_documented_pools():
    from reports.mmlu_pro import mmlu_pools, mmlu_pro_models

    models = mmlu_pro_models()
    assert len(models) == 29
    assert models["gemini-1.5-pro-002"].params_b is None and not models["gemini-1.5-pro-002"].open_weights
    assert models["DeepSeek-Coder-V2"].note == "MoE, 21B active; DeepSeek licence"
    assert models["Mixtral-8x7B-v0.1"].params_b == pytest.approx(46.7)
    assert list(mmlu_pools()) == ["all 29 models", "open weights (27)", "<= 8B parameters (14)"]


@pytest.mark.skipif(not (DATA / "devops-eval").is_dir(), reason="shared/data not available")
def test_devops_section_matches_the_committed_results():
    from reports.devops import devops_section

    section = devops_section(DATA)
    assert section.startswith("## DevOps-Eval")
    assert section in (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")
