"""AutoAttack's family in the study, measured: a 600-source default corpus (`afg build-shards
--limit 600`, model cached), grown by `afg extend --attacks apgd_ce,square`, then `afg bench DIR
--seeds 3 --unseen all`, alone. Keeps the bench's report as study_autoattack.json beside this
script and prints the tables docs/study.md shows (`bench_tables.py`).

    python docs/benchmarks/study_autoattack.py   (one bench of 3 seeds: about 12 minutes)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_tables import bench, tables
from figures import afg, main


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "s600"
        afg("build-shards", "--limit", "600", "--out", str(corpus), "--no-progress")
        afg("extend", str(corpus), "--attacks", "apgd_ce,square", "--no-progress")
        command = (
            "afg build-shards --limit 600 --out s600 && afg extend s600 --attacks apgd_ce,square"
            " && afg bench s600 --seeds 3 --unseen all"
        )
        return bench(corpus, "--seeds", "3", "--unseen", "all", command=command)


table = tables

if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # one bench: its 3 seeds and intervals inside
