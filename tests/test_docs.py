"""The documentation: the Sphinx site builds with warnings as errors, every code block of
README.md and docs/ runs (tests/_snippets.py), and every example script runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _snippets import blocks

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.parts)]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("numpydoc")
    _run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"),
          str(tmp_path / "html")], REPO, 600)
    cli = (tmp_path / "html" / "cli.html").read_text()
    # The CLI page is rendered from the parser: every command is on it.
    from nnkd.cli import build_parser

    commands = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    assert all(f"nnkd {name}" in cli for name in commands)


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.skip_reason is None for b in blocks(p))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_page_snippets_run(page, tmp_path):
    _run([sys.executable, str(REPO / "tests" / "_snippets.py"), str(page)], tmp_path, 600)


def test_skipped_snippets_say_why():
    skipped = [(p.name, b.line, b.skip_reason) for p in PAGES for b in blocks(p) if b.skip_reason is not None]
    assert all(len(reason) > 20 for *_, reason in skipped), skipped


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    _run([sys.executable, str(script)], tmp_path, 300)


def test_snippet_parser_on_a_known_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n<!-- snippet: skip (needs a network) -->\n```bash\ncurl x\n```\n"
                    "```text\nnot code\n```\n```bash\necho $x\n```\n")
    found = blocks(page)
    assert [(b.language, b.line, b.skip_reason) for b in found] == [
        ("python", 3, None), ("bash", 8, "needs a network"), ("bash", 14, None)]
    assert found[0].code == "x = 1\n"


def test_readme_demo_table_is_the_committed_run():
    import json

    from nnkd.demo import summary_table

    committed = json.loads((REPO / "benchmarks" / "results" / "demo" / "demo.json").read_text())
    assert summary_table(committed) in (REPO / "README.md").read_text()
