"""The default build, measured as a new user runs it: `afg build-shards --out DIR` with an empty
AFG cache (so the target model is trained in the run), `--runs` times, alone. Per run: the wall
clock around the command, and from the corpus's own stats.json its records, largest process
RSS, model accuracy and training time, attack success and the stages' wall seconds; across
runs, whether every file the manifests list has the same sha256. Writes default_build.json
beside this script and prints the table that docs/benchmarks.md shows (tests/test_docs.py checks
that they agree).

    python docs/benchmarks/default_build.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from figures import afg, listed_files, machine, main, markdown, per_run

TARGETS = {"wall_seconds": 300, "peak_rss_mb": 4096}  # the default build's budgets


def one_build(folder: Path, *args: str) -> dict:
    """`afg build-shards ARGS` into FOLDER/afg with an empty AFG cache (the model is trained in
    the run): the wall clock and the corpus's own figures."""
    cache = {"AFG_CACHE_DIR": str(folder / "cache")}
    start = time.perf_counter()
    afg("build-shards", *args, "--out", str(folder / "afg"), "--no-progress", env=cache)
    wall = round(time.perf_counter() - start, 1)
    stats = json.loads((folder / "afg" / "stats.json").read_text())
    return {
        "wall_seconds": wall,
        "records": stats["records"],
        "peak_rss_mb": stats["peak_rss_mb"],
        "test_accuracy": stats["target_model"]["test_accuracy"],
        "train_seconds": stats["target_model"]["train_seconds"],
        "success_rate": {a: s["success_rate"] for a, s in stats["attacks"].items()},
        "stage_wall_seconds": {
            name: stage.get("wall_seconds") for name, stage in stats["stages"].items()
        },
        "files": listed_files(folder / "afg"),
    }


def measure(runs: int) -> dict:
    builds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            builds.append(one_build(Path(tmp)))
    same = all(b["files"] == builds[0]["files"] for b in builds)
    for build in builds:
        build["files"] = len(build.pop("files"))
    return {
        "machine": machine(),
        "command": "afg build-shards --out DIR (empty AFG cache: the model trained in the run)",
        "runs": builds,
        "identical_files": same,
        "median_wall_seconds": statistics.median(b["wall_seconds"] for b in builds),
        "targets": TARGETS,
    }


def _runs(result: dict, key: str, form: str = "{:.1f}") -> str:
    return per_run((run[key] for run in result["runs"]), form)


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    first, targets = result["runs"][0], result["targets"]
    stages = sorted(first["stage_wall_seconds"].items(), key=lambda item: -(item[1] or 0))
    rows = [
        [
            "wall time",
            f"median {result['median_wall_seconds']:.1f} s ({_runs(result, 'wall_seconds')} s),"
            f" budget {targets['wall_seconds']} s",
        ],
        [
            "largest process's peak RSS",
            f"{_runs(result, 'peak_rss_mb', '{:.0f}')} MB, budget {targets['peak_rss_mb']} MB",
        ],
        ["records", f"{first['records']:,}"],
        [
            "target model",
            f"test accuracy {_runs(result, 'test_accuracy', '{:.3f}')}, trained in "
            f"{_runs(result, 'train_seconds')} s",
        ],
        [
            "attack success (sources the model gets right)",
            ", ".join(f"{a} {r:.3f}" for a, r in first["success_rate"].items()),
        ],
        [
            "stage wall seconds (first run)",
            ", ".join(f"{name} {seconds:.1f}" for name, seconds in stages if seconds >= 0.05),
        ],
        [
            "same bytes in every run",
            f"{'yes' if result['identical_files'] else 'NO'}, {first['files']} files (sha256)",
        ],
    ]
    return markdown(["figure", "value"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
