"""The genome encoders, measured by `afg bench-encoder` on the default digits model (3 layers x
4 groups), `--runs` times, alone: NMF on a build batch (`--encoder groupmap --samples 256`:
torch batched vs scikit-learn one sample at a time, same iterations); groupviz on 16 samples
with `--curve` at one torch thread (192 visualizations at 32 px: batched vs one at a time, and
records/s and the objective reached per (steps, lr) as a fraction of Lucid's 512 steps at lr
0.05); and the groupbasis atlas (`--encoder groupbasis`, one thread). Writes encoders.json beside
this script and prints the two tables that docs/benchmarks.md shows.

    python docs/benchmarks/encoders.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics

from figures import afg, machine, main, markdown, median_runs, per_run

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def bench(*args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(afg("bench-encoder", *args, "--json", env=env))


def measure(runs: int) -> dict:
    rounds = [
        {
            "nmf": bench("--encoder", "groupmap", "--samples", "256")["nmf"],
            "groupviz": bench(
                "--encoder", "groupviz", "--samples", "16", "--curve", env=ONE_THREAD
            ),
            "atlas": bench("--encoder", "groupbasis", env=ONE_THREAD)["atlas"],
        }
        for _ in range(runs)
    ]
    return {"machine": machine(), "runs": rounds}


def figures_table(result: dict) -> str:
    runs = result["runs"]
    nmf = [run["nmf"] for run in runs]
    viz = [run["groupviz"]["groupviz"] for run in runs]
    atlas = [run["atlas"] for run in runs]
    rows = [
        [
            f"NMF, torch batched vs scikit-learn per sample, {runs[0]['nmf']['factorizations']}"
            " factorizations",
            f"speedup {median_runs([n['nmf_speedup'] for n in nmf], '{:.1f}')}; relative error"
            f" {nmf[0]['torch_relative_error']:.4f} vs {nmf[0]['sklearn_relative_error']:.4f}",
        ],
        [
            f"groupviz, {viz[0]['visualizations']} visualizations, {viz[0]['steps']} steps,"
            f" {viz[0]['image_size']} px, batched vs one at a time (one thread)",
            f"speedup {median_runs([v['speedup'] for v in viz], '{:.1f}')};"
            f" visualizations/s {median_runs([v['visualizations_per_s'] for v in viz], '{:.1f}')}",
        ],
        [
            "groupviz: share of its time the model's own forward+backward passes take",
            median_runs([v["fraction_of_model_fwd_bwd"] for v in viz], "{:.2f}"),
        ],
        [
            "groupviz: objective reached over the random start",
            median_runs([v["objective_gain_median"] for v in viz], "{:.1f}")
            + "x (median over visualizations)",
        ],
        [
            f"groupbasis atlas: {atlas[0]['pictures']} pictures at {atlas[0]['steps']} steps,"
            f" {atlas[0]['image_size']} px (one thread), s",
            median_runs([a["seconds"] for a in atlas], "{:.1f}"),
        ],
    ]
    return markdown(["figure", "value"], rows)


def curve_table(result: dict) -> str:
    curves = [run["groupviz"]["render_curve"] for run in result["runs"]]
    rows = []
    for i, point in enumerate(curves[0]):
        rates = [curve[i]["records_per_s"] for curve in curves]
        name = f"{point['steps']} @ {point['lr']}"
        label = {"lucid": f"{name} (Lucid)", "encoder": f"**{name} (the digits setting)**"}
        rows.append(
            [
                label.get(point["setting"], name),
                f"{statistics.median(rates):.3f} ({per_run(rates, '{:.3f}')})",
                f"{point['objective_vs_lucid']:.3f} / {point['objective_vs_lucid_min']:.3f}",
            ]
        )
    header = ["steps @ lr", "records/s (runs)", "objective vs 512 steps: mean / worst"]
    return markdown(header, rows)


def table(result: dict) -> str:
    """The two markdown tables of a result (what docs/benchmarks.md carries)."""
    return figures_table(result) + "\n\n" + curve_table(result)


if __name__ == "__main__":
    main(__file__, measure, table)
