"""The full MNIST test set, built as a new user would: `afg build-shards mnist --source-root
../shared/data/mnist` (10,000 digits, the mnist builder's genome and attacks) with an empty AFG
cache (the target model trained in the run), once, alone: the wall clock and the corpus's own
figures (`default_build.one_build`). Writes full_mnist.json beside this script and prints the
table that docs/benchmarks.md shows.

    python docs/benchmarks/full_mnist.py   (about 15 minutes on a 2-core CPU)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from default_build import one_build
from figures import machine, main, markdown

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        build = one_build(Path(tmp), "mnist", "--source-root", str(MNIST))
    build["files"] = len(build["files"])
    return {"machine": machine(), "run": build}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    run = result["run"]
    stages = sorted(run["stage_wall_seconds"].items(), key=lambda item: -(item[1] or 0))
    rows = [
        ["wall time", f"{run['wall_seconds']:.1f} s"],
        ["records", f"{run['records']:,} ({run['records'] / run['wall_seconds']:.1f} per second)"],
        ["largest process's peak RSS", f"{run['peak_rss_mb']:.0f} MB"],
        [
            "target model",
            f"test accuracy {run['test_accuracy']:.3f}, trained in {run['train_seconds']:.1f} s",
        ],
        [
            "attack success (sources the model gets right)",
            ", ".join(f"{a} {r:.3f}" for a, r in run["success_rate"].items()),
        ],
        [
            "stage wall seconds",
            ", ".join(f"{name} {seconds:.1f}" for name, seconds in stages if seconds >= 0.05),
        ],
        ["files", f"{run['files']}"],
    ]
    return markdown(["figure", "value"], rows)


if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # one build of 10,000 sources
