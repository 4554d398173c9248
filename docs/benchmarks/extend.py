"""Growing a corpus, measured: the default corpus (`afg build-shards`, model cached), then
`afg extend BASE --attacks apgd_ce,square --out DIR` `--runs` times, each into a fresh folder,
against a fresh `afg build-shards --attacks fgsm,pgd,cw_l2,apgd_ce,square` doing the same work
at once. Per run: the wall clock, the files the extended corpus shares with the base (hard
links) and those it wrote, and whether every file its manifest lists has the sha256 of the fresh
build's. The target (issue #40): at most 1.1x the fresh build's seconds in the added attacks'
stages plus a finalize. Writes extend.json beside this script and prints the table that
docs/benchmarks.md shows.

    python docs/benchmarks/extend.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from figures import afg, listed_files, machine, main, markdown, per_run

ADDED = ("apgd_ce", "square")
ALL = ("fgsm", "pgd", "cw_l2", *ADDED)


def timed(*args: str) -> float:
    start = time.perf_counter()
    afg(*args)
    return round(time.perf_counter() - start, 1)


def one_extend(base: Path, out: Path, fresh: dict[str, str]) -> dict:
    seconds = timed(
        "extend", str(base), "--attacks", ",".join(ADDED), "--out", str(out), "--no-progress"
    )
    listed = listed_files(out)
    linked = sum(
        (out / p).stat().st_ino == (base / p).stat().st_ino
        for p in listed_files(base)
        if p in listed
    )
    return {
        "seconds": seconds,
        "listed": len(listed),
        "linked": linked,
        "equal_to_fresh": listed == fresh,
    }


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base, fresh = Path(tmp) / "afg", Path(tmp) / "fresh"
        base_seconds = timed("build-shards", "--out", str(base), "--no-progress")
        fresh_seconds = timed(
            "build-shards", "--attacks", ",".join(ALL), "--out", str(fresh), "--no-progress"
        )
        stages = json.loads((fresh / "stats.json").read_text())["stages"]
        added = sum(stages[f"attack/{a}"]["wall_seconds"] for a in ADDED)
        finalize = timed("finalize", str(fresh))
        expected = listed_files(fresh)
        extends = [one_extend(base, Path(tmp) / f"ext{i}", expected) for i in range(runs)]
    return {
        "machine": machine(),
        "base_build_seconds": base_seconds,
        "fresh_build_seconds": fresh_seconds,
        "fresh_added_attack_seconds": round(added, 1),
        "finalize_seconds": finalize,
        "target_seconds": round(1.1 * added + finalize, 1),
        "runs": extends,
        "median_seconds": statistics.median(run["seconds"] for run in extends),
    }


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    runs = result["runs"]
    rows = [
        [
            "`afg build-shards` (the base: fgsm, pgd, cw_l2)",
            f"{result['base_build_seconds']:.1f} s",
        ],
        [
            f"`afg build-shards --attacks {','.join(ALL)}` (fresh)",
            f"{result['fresh_build_seconds']:.1f} s, of which the added attacks' stages"
            f" {result['fresh_added_attack_seconds']:.1f} s",
        ],
        ["`afg finalize` on the fresh corpus", f"{result['finalize_seconds']:.1f} s"],
        [
            f"`afg extend BASE --attacks {','.join(ADDED)} --out DIR`",
            f"median {result['median_seconds']:.1f} s ({per_run(r['seconds'] for r in runs)} s);"
            f" target <= 1.1 x {result['fresh_added_attack_seconds']:.1f} +"
            f" {result['finalize_seconds']:.1f} = {result['target_seconds']:.1f} s",
        ],
        [
            "files of the extended corpus: linked to the base's / listed",
            " / ".join(f"{r['linked']} of {r['listed']}" for r in runs),
        ],
        [
            "every listed file equal to the fresh build's (sha256)",
            " / ".join("yes" if r["equal_to_fresh"] else "NO" for r in runs),
        ],
    ]
    return markdown(["figure", "value"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
