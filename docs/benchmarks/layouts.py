"""Same bytes on any layout: `afg build-shards --limit 300` (two tasks; model cached) built once
per layout, alone: the default (on CPU, one task process of one numeric thread per core),
`--threads 1`, `--threads 4`, two static ranks then `afg finalize`, torchrun with two ranks
then `afg finalize`, and Ray (`--executor ray`). Per layout: the wall clock of its commands, and
whether every file its manifest lists has the default build's sha256. Writes layouts.json
beside this script and prints the table that docs/benchmarks.md shows.

    python docs/benchmarks/layouts.py [--runs 1]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import afg, listed_files, machine, main, markdown, per_run

BUILD = ["build-shards", "--limit", "300", "--no-progress"]


def _torchrun(out: str) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command = [*launch, "-m", "afg_datasets.cli", *BUILD, "--out", out]
    subprocess.run(command, capture_output=True, text=True, check=True)
    afg("finalize", out)


def _ranks(out: str) -> None:
    for rank in (1, 0):
        afg(*BUILD, "--out", out, "--rank", str(rank), "--world-size", "2")
    afg("finalize", out)


LAYOUTS = {
    "default (one task process per core)": lambda out: afg(*BUILD, "--out", out),
    "`--threads 1`": lambda out: afg(*BUILD, "--out", out, "--threads", "1"),
    "`--threads 4`": lambda out: afg(*BUILD, "--out", out, "--threads", "4"),
    "2 static ranks (`--rank`, `--world-size`), then `afg finalize`": _ranks,
    "torchrun, 2 ranks, then `afg finalize`": _torchrun,
    "Ray (`--executor ray`)": lambda out: afg(*BUILD, "--out", out, "--executor", "ray"),
}


def measure(runs: int) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        afg(*BUILD, "--out", f"{tmp}/warm")  # the target model, trained and cached untimed
        reference = None
        for number, (name, build) in enumerate(LAYOUTS.items()):
            seconds, same = [], True
            for run in range(runs):
                out = f"{tmp}/{number}-{run}"
                start = time.perf_counter()
                build(out)
                seconds.append(round(time.perf_counter() - start, 1))
                built = listed_files(Path(out))
                reference = reference or built
                same = same and built == reference
            rows[name] = {"seconds": seconds, "files": len(built), "same_as_default": same}
    return {"machine": machine(), "runs": runs, "command": " ".join(BUILD), "layouts": rows}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    rows = [
        [
            name,
            f"{per_run(row['seconds'])} s",
            f"{'yes' if row['same_as_default'] else '**NO**'}, {row['files']} of {row['files']}",
        ]
        for name, row in result["layouts"].items()
    ]
    return markdown(["layout", "wall time", "files identical to the default build's"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
