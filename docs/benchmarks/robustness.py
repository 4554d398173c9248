"""Build robustness and scale, measured by `afg bench-build` (builds of 256 sources in tasks of
32, model cached, alone): `--what kill` once (a build SIGKILLed at 10 random moments, each
resumed by the same command and compared file by file with an unkilled build, then verified),
and `--what scaling,memory` `--runs` times (1 worker on 256 sources vs 2 on 512, one torch thread
each; peak RSS of 256 vs 1,024 sources). Writes robustness.json beside this script and prints
the table that docs/benchmarks.md shows.

    python docs/benchmarks/robustness.py [--runs 3]
"""

from __future__ import annotations

import json

from figures import afg, machine, main, markdown, median_runs, per_run

BUILDS = ["--limit", "256", "--sources-per-task", "32", "--json"]


def bench(what: str) -> dict:
    return json.loads(afg("bench-build", "--what", what, *BUILDS))


def measure(runs: int) -> dict:
    kill = bench("kill")["kill"]
    scale = [bench("scaling,memory") for _ in range(runs)]
    return {
        "machine": machine(),
        "command": "afg bench-build --limit 256 --sources-per-task 32",
        "kill": kill,
        "scaling": [run["scaling"] for run in scale],
        "memory": [run["memory"] for run in scale],
    }


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    kill, scaling, memory = result["kill"], result["scaling"], result["memory"]
    done = sorted(run["tasks_done_at_kill"] for run in kill["runs"])
    fractions = [min(run["fraction_of_single"]) for run in scaling]
    rows = [
        [
            f"SIGKILL at {kill['points']} random moments, then the same command again",
            f"{kill['identical']} of {kill['points']} resumed corpora byte-identical to the"
            f" unkilled build and verified clean ({kill['killed_mid_build']} killed mid-build,"
            f" after {done[0]} to {done[-1]} of {kill['tasks']} tasks)",
            f"{kill['points']} of {kill['points']}",
        ],
        [
            "peak RSS, 256 vs 1,024 sources (MB)",
            " / ".join(
                f"{m['x1']['peak_rss_mb']:.0f} vs {m['x4']['peak_rss_mb']:.0f}" for m in memory
            )
            + f": ratio {median_runs([m['ratio'] for m in memory], '{:.3f}')}",
            "ratio <= 1.10",
        ],
        [
            "weak scaling: 1 worker, records/s",
            per_run(run["single_worker_records_per_s"] for run in scaling),
            "",
        ],
        [
            "weak scaling: 2 workers, each, as a fraction of one (the lower)",
            median_runs(fractions, "{:.2f}"),
            ">= 0.80",
        ],
        [
            "end to end records/s, 1 vs 2 workers (start-up included)",
            " / ".join(
                "{one:.1f} vs {two:.1f}".format(**run["end_to_end_records_per_s"])
                for run in scaling
            ),
            "",
        ],
    ]
    return markdown(["figure", "value", "target"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
