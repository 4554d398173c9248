"""Every Python snippet of the README and the guides in docs/, run as written on a small corpus
of the default builder (its default encoder, whichever that is), from the folder that holds
`afg`; and every `afg ...` line of their code blocks checked against the command line."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import typer

from afg_datasets.building import build_corpus
from afg_datasets.config import load_config
from afg_datasets.recognizer import Recognizer
from afg_datasets.recognizer.training import TrainConfig
from tests.samples import REPO

PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(language: str = "") -> list[tuple[str, str]]:
    """(page, code) of every fenced block in the pages, of `language` (any when empty)."""
    found = []
    for page in PAGES:
        for lang, code in re.findall(r"(?m)^```(\w*)\n(.*?)^```", page.read_text(), re.S):
            if not language or lang == language:
                found.append((page.name, code))
    return found


def snippets() -> list[str]:
    """Python blocks that read the local corpus (not the Hub's `your-name/...` repos)."""
    return [code for _, code in blocks("python") if "your-name/" not in code]


def afg_lines() -> list[tuple[str, str]]:
    """(page, line) for every `afg ...` command line in a code block, continuations joined."""
    lines = []
    for page, code in blocks():
        for line in code.replace("\\\n", " ").splitlines():
            if line.startswith((" ", "\t")) and lines and lines[-1][0] == page:
                lines[-1] = (page, lines[-1][1] + " " + line.strip())  # a synopsis's next line
            for part in line.split("&&"):
                if part.strip().startswith("afg ") and not line.startswith((" ", "\t")):
                    lines.append((page, part.strip()))
    return lines


def test_every_afg_line_of_the_docs_names_a_real_command_and_its_options():
    """A renamed command or option fails here, wherever the docs spell it."""
    group = typer.main.get_command(__import__("afg_datasets.cli").cli.app)
    global_options = {o for p in group.params for o in [*p.opts, *p.secondary_opts]}
    checked, wrong = 0, []
    for page, line in afg_lines():
        words = shlex.split(line.split(" #")[0], posix=True)[1:]
        words = [w for w in words if w not in global_options]
        if not words or words[0] in ("COMMAND", "--help"):
            continue
        command = group.commands.get(words[0])
        if command is None:
            wrong.append(f"{page}: {line} (no command {words[0]!r})")
            continue
        known = {o for p in command.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", " ".join(words[1:])):
            if option not in known:
                wrong.append(f"{page}: {line} ({option} is no option of afg {words[0]})")
        checked += 1
    assert checked >= 40 and not wrong, wrong


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    build_corpus(load_config("digits").replace(limit=48), folder / "afg", progress=False)
    fitted = Recognizer.fit(folder / "afg", train_cfg=TrainConfig(epochs=2))
    fitted.save(folder / "recognizer")  # what `afg fit-recognizer afg --out recognizer` writes
    return folder


RUN_ALL = r"""
import sys, traceback
for number, code in enumerate(sys.argv[1:], 1):
    try:
        exec(compile(code, f"docs snippet {number}", "exec"), {"__name__": "__main__"})
    except Exception:
        sys.exit(f"docs snippet {number} failed:\n{code}\n{traceback.format_exc()}")
"""


def test_the_readme_snippets_run_on_the_default_corpus(default_corpus):
    """Each in a namespace of its own, in one process (one import of torch and datasets)."""
    codes = snippets()
    assert len(codes) >= 7, "the snippets are found"
    result = subprocess.run(
        [sys.executable, "-c", RUN_ALL, *codes], cwd=default_corpus, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
