"""What a user waits for on the default corpus, once it is built: re-running the finished build
(it checks and prints, writing nothing) and `afg bench --quick`. Builds the default corpus
once in a temporary folder (the target model cached), then times each command `--runs` times,
alone, and counts the files the re-run wrote. Writes default_corpus_waits.json beside this
script and prints the table that docs/benchmarks.md shows (tests/test_docs.py checks that they
agree).

    python docs/benchmarks/default_corpus_waits.py [--runs 3]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from figures import afg, machine, main, markdown, per_run

TARGETS = {"rerun": 5.0, "bench_quick": 180.0}  # seconds (issue #42)


def timed(*args: str) -> float:
    start = time.perf_counter()
    afg(*args)
    return round(time.perf_counter() - start, 2)


def written_since(folder: Path, moment: float) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.stat().st_mtime > moment)


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "afg"
        afg("build-shards", "--out", str(corpus))
        rerun, written = [], []
        for _ in range(runs):
            moment = time.time()
            rerun.append(timed("build-shards", "--out", str(corpus)))
            written += written_since(corpus, moment)
        quick = [
            timed("bench", str(corpus), "--quick", "--out", f"{tmp}/bench{i}") for i in range(runs)
        ]
    rows = {"rerun": rerun, "bench_quick": quick}
    commands = {
        "rerun": "afg build-shards (on the finished default corpus)",
        "bench_quick": "afg bench afg --quick",
    }
    return {
        "machine": machine(),
        "runs": runs,
        "files_written_by_reruns": len(written),
        "commands": {
            name: {
                "command": commands[name],
                "seconds": seconds,
                "median_seconds": statistics.median(seconds),
                "target_seconds": TARGETS[name],
            }
            for name, seconds in rows.items()
        },
    }


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    rows = [
        [
            f"`{row['command']}`",
            f"{per_run(row['seconds'])} s",
            f"{row['median_seconds']:.1f} s",
            f"<= {row['target_seconds']:.0f} s",
        ]
        for row in result["commands"].values()
    ]
    rows.append(["files the re-runs wrote", result["files_written_by_reruns"], "", 0])
    return markdown(["command", "runs", "median", "target"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
