"""The README's Python snippets, run as written on a small corpus of the default builder (its
default encoder, whichever that is), from the folder that holds `afg`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from afg_datasets.building import build_corpus
from afg_datasets.config import load_config
from afg_datasets.recognizer import Recognizer
from afg_datasets.recognizer.training import TrainConfig
from tests.samples import REPO

README = REPO / "README.md"


def snippets() -> list[str]:
    """Python blocks that read the local corpus (not the Hub's `your-name/...` repos)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [block for block in blocks if "your-name/" not in block]


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
        exec(compile(code, f"README snippet {number}", "exec"), {"__name__": "__main__"})
    except Exception:
        sys.exit(f"README snippet {number} failed:\n{code}\n{traceback.format_exc()}")
"""


def test_the_readme_snippets_run_on_the_default_corpus(default_corpus):
    """Each in a namespace of its own, in one process (one import of torch and datasets)."""
    blocks = snippets()
    assert len(blocks) >= 3, "the snippets are found"
    result = subprocess.run(
        [sys.executable, "-c", RUN_ALL, *blocks], cwd=default_corpus, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
