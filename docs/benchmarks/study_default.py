"""What AFG buys on the default corpus, measured: `afg build-shards --out DIR` (model cached),
then `afg bench DIR --seeds 3 --adaptive` (every held-out setting, the matched raw-pixel control,
Mahalanobis, LID, and a white-box PGD against each detector), alone. Keeps the bench's report
(bench/results.json: every row with its 95 % bootstrap interval over test source images and
training seeds, and its seed spread) as study_default.json beside this script and prints the
three tables docs/study.md shows (`bench_tables.py`).

    python docs/benchmarks/study_default.py   (one bench of 3 seeds: about 15 minutes)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_tables import bench, tables
from figures import afg, main


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "afg"
        afg("build-shards", "--out", str(corpus), "--no-progress")
        command = "afg build-shards && afg bench afg --seeds 3 --adaptive"
        return bench(corpus, "--seeds", "3", "--adaptive", command=command)


table = tables

if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # one bench: its 3 seeds and intervals inside
