"""`afg estimate` against the wall time of the build it plans, on two corpus shapes: the default
build (8 tasks of up to 256 sources) and `--limit 300` (one task of 256 sources and one of 44).
Run alone on the machine; each build in a fresh folder, the target model cached (as after the
first build). Writes estimate_accuracy.json beside this script and prints the table that
docs/benchmarks.md shows (tests/test_docs.py checks that they agree).

    python docs/benchmarks/estimate_accuracy.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

from figures import afg, machine, main, markdown, per_run

SHAPES = {"afg build-shards": [], "afg build-shards --limit 300": ["--limit", "300"]}


def measure(runs: int) -> dict:
    shapes = {}
    for name, limit in SHAPES.items():
        planned = ["--sources", limit[1]] if limit else []
        estimated = json.loads(afg("estimate", *planned, "--json"))["wall_seconds"]
        walls = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                afg("build-shards", "--out", f"{tmp}/afg", *limit)
                walls.append(round(time.perf_counter() - start, 1))
        real = statistics.median(walls)
        shapes[name] = {
            "estimate_seconds": estimated,
            "build_seconds": walls,
            "median_build_seconds": real,
            "estimate_over_build": round(estimated / real, 3),
        }
    return {"machine": machine(), "runs": runs, "shapes": shapes}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    header = ["command", "estimate", "builds", "median", "estimate / build"]
    return markdown(
        header,
        (
            [
                f"`{name}`",
                f"{s['estimate_seconds']:.1f} s",
                f"{per_run(s['build_seconds'])} s",
                f"{s['median_build_seconds']:.1f} s",
                f"{s['estimate_over_build']:.2f}",
            ]
            for name, s in result["shapes"].items()
        ),
    )


if __name__ == "__main__":
    main(__file__, measure, table)
