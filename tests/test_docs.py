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


def test_every_figure_file_is_the_table_the_docs_show(monkeypatch):
    """A figure in docs/benchmarks.md that a script under docs/benchmarks/ makes is the table
    that script renders from the JSON it wrote beside itself, and the page names the script."""
    page = (REPO / "docs" / "benchmarks.md").read_text()
    folder = REPO / "docs" / "benchmarks"
    scripts = sorted(p for p in folder.glob("*.py") if p.name != "figures.py")  # theirs, shared
    assert scripts
    monkeypatch.syspath_prepend(str(folder))  # as when run: they import `figures`
    for script in scripts:
        table = runpy.run_path(str(script))["table"]  # not as __main__: nothing is measured
        result = json.loads(script.with_suffix(".json").read_text())
        assert table(result) in page, f"run: python docs/benchmarks/{script.name}"
        assert f"docs/benchmarks/{script.name}" in page and result["machine"]["cpus"]
