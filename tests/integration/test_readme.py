"""The README's "Use it from LangChain" snippets run as written, on the embedded default."""

import contextlib
import io
import logging
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def langchain_snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use it from LangChain"):]
    section = section[: section.index("\n## ", 4)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_the_python_uses():
    assert len(langchain_snippets()) == 6


@pytest.mark.parametrize("number", range(6))
def test_snippet_runs(number, caplog):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), caplog.at_level(logging.WARNING):
        exec(compile(langchain_snippets()[number], f"README snippet {number + 1}", "exec"), {})
    printed = out.getvalue()
    assert printed.strip()
    # the second turn loads the router's state from the checkpointer without LangGraph's type warnings
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage()]
    if number == 2:
        assert printed.count("name=") == 2 and "moons=" in printed        # two Planet instances
    if number == 3:
        assert "cannot call tools" in printed
    if number == 4:
        assert "smollm2 {'expert': 'smollm2'}" in printed and printed.rstrip().endswith("gemma3")
    if number == 5:
        assert "'math'" in printed and printed.split()[-1] in ("gemma3", "smollm2")
