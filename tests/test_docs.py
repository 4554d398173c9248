"""The documentation as a product: the command-line reference is the app's, the README is short
with its two commands on top, and every relative link between the pages resolves."""

from __future__ import annotations

import json
import re
import runpy

from tests.cli_reference import REFERENCE, reference
from tests.samples import REPO
from tests.test_readme import PAGES

QUICKSTART = ["pip install -e . && afg build-shards", 'pip install -e ".[test]" && pytest']


def test_the_cli_reference_is_the_apps():
    """An added, renamed or re-documented command or option without its reference fails."""
    assert REFERENCE.read_text() == reference(), "run: python tests/cli_reference.py"


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.split()) <= 3000
    head = text.splitlines()[:40]
    assert all(command in head for command in QUICKSTART)
    assert QUICKSTART[1] in (REPO / ".ci" / "run").read_text()  # CI runs what the README says


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken


FIGURE_PAGES = [
    REPO / "docs" / page for page in ("benchmarks.md", "study.md", "scaling.md", "history.md")
]
FIGURES = REPO / "docs" / "benchmarks"
HELPERS = {"figures.py", "bench_tables.py"}  # what the scripts share; each other file is one


def test_every_figure_file_is_the_table_the_docs_show(monkeypatch):
    """A figure on a page of figures (benchmarks, study, scaling, history) that a script under
    docs/benchmarks/ makes is the table that script renders from the JSON it wrote beside
    itself, and the pages name the script."""
    pages = "\n".join(page.read_text() for page in FIGURE_PAGES)
    scripts = sorted(p for p in FIGURES.glob("*.py") if p.name not in HELPERS)
    assert scripts
    monkeypatch.syspath_prepend(str(FIGURES))  # as when run: they import `figures`
    for script in scripts:
        table = runpy.run_path(str(script))["table"]  # not as __main__: nothing is measured
        result = json.loads(script.with_suffix(".json").read_text())
        assert table(result) in pages, f"run: python docs/benchmarks/{script.name}"
        assert f"docs/benchmarks/{script.name}" in pages and result["machine"]["cpus"]


def tables_with_their_paragraph(text: str) -> list[tuple[int, str]]:
    """Each markdown table of a page (its first line number) with the paragraph before it (the
    one before its run of tables, when tables follow each other)."""
    lines, found = text.splitlines(), []
    for number, line in enumerate(lines):
        if line.startswith("|") and (number == 0 or not lines[number - 1].startswith("|")):
            end = number - 1
            while end >= 0 and (not lines[end].strip() or lines[end].startswith("|")):
                end -= 1
            start = end
            while start >= 0 and lines[start].strip() and not lines[start].startswith("|"):
                start -= 1
            found.append((number + 1, " ".join(lines[start + 1 : end + 1])))
    return found


def test_every_table_of_figures_names_the_command_that_made_it():
    """A table on a page of figures says, in the paragraph above it, what produced it: a
    script under docs/benchmarks/ or the `afg` (or pytest) command, so anyone can run it
    again."""
    unnamed = [
        f"{page.name}:{line}"
        for page in FIGURE_PAGES
        for line, paragraph in tables_with_their_paragraph(page.read_text())
        if not re.search(r"`(afg |python |pytest|AFG_)", paragraph)
    ]
    assert not unnamed, f"tables without the command that made them: {unnamed}"
