"""What AFG buys on real MNIST digits, measured: `afg build-shards mnist --source-root
../shared/data/mnist --limit 2000` (2,000 test-set digits, the mnist builder's genome and
attacks, model cached), then `afg bench DIR --seeds 3 --adaptive`, alone. Keeps the bench's
report as study_mnist.json beside this script and prints the tables docs/study.md shows
(`bench_tables.py`).

    python docs/benchmarks/study_mnist.py   (one bench of 3 seeds: about 15 minutes)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_tables import bench, tables
from figures import afg, main

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "mnist"
        build = ["mnist", "--source-root", str(MNIST), "--limit", "2000"]
        afg("build-shards", *build, "--out", str(corpus), "--no-progress")
        command = (
            "afg build-shards mnist --source-root ../shared/data/mnist --limit 2000"
            " && afg bench mnist --seeds 3 --adaptive"
        )
        return bench(corpus, "--seeds", "3", "--adaptive", command=command)


table = tables

if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # one bench: its 3 seeds and intervals inside
