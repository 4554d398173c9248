"""What the scripts beside this one share: the machine a figure was measured on, and their
main (measure, write the numbers as JSON beside the script, print the table that
docs/benchmarks.md shows)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path


def afg(*args: str, env: dict[str, str] | None = None) -> str:
    """What `afg ARGS` prints (this Python's package; `env` added to this environment),
    failing loudly if it fails."""
    command = [sys.executable, "-m", "afg_datasets.cli", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise SystemExit(f"afg {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def machine() -> dict:
    """The platform and cores, and the package versions a bench report records."""
    from afg_datasets.evaluation.protocol import versions

    return {"platform": platform.platform(), "cpus": os.cpu_count(), **versions()}


def markdown(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: the header, its rule, a line per row."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def per_run(values: Iterable[float], form: str = "{:.1f}") -> str:
    """Each run's figure, as the tables show them: `a / b / c`."""
    return " / ".join(form.format(value) for value in values)


def median_runs(values: Sequence[float], form: str = "{:.1f}") -> str:
    """`median m (a / b / c)`: the runs' median, then each run."""
    return f"median {form.format(statistics.median(values))} ({per_run(values, form)})"


def listed_files(corpus: Path) -> dict[str, str]:
    """Each file a corpus's manifest lists, with its sha256."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    return {entry["path"]: entry["sha256"] for entry in manifest["files"]}


def main(
    script: str, measure: Callable[[int], dict], table: Callable[[dict], str], runs: int = 3
) -> None:
    """`python SCRIPT [--runs N]`: measure, write SCRIPT's .json beside it, print the table."""
    parser = argparse.ArgumentParser(description=f"{Path(script).stem}: measure and write it")
    parser.add_argument("--runs", type=int, default=runs)
    result = measure(parser.parse_args().runs)
    Path(script).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
