"""The device check's floor on this CPU: `afg bench-build --what device --device cpu` (the tiny
preset) run several times, alone. Per run and precision: the forward+backward floor, the
spread of the runs it is the median of, and the largest fraction of it any attack stage
reached (a stage cannot beat the floor: at most 1). Writes device_floor.json beside this script
and prints the table that docs/benchmarks.md shows (tests/test_docs.py checks that they agree).

    python docs/benchmarks/device_floor.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile

from figures import afg, machine, main, markdown, per_run


def measure(runs: int) -> dict:
    floors: dict[str, list[dict]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            args = ["bench-build", "--what", "device", "--device", "cpu", "--work-dir", tmp]
            printed = afg(*args, "--json")
        for variant in json.loads(printed)["device"]["variants"]:
            floors.setdefault(variant["precision"], []).append(
                {
                    "floor_images_per_s": variant["floor_images_per_s"],
                    "floor_spread": variant["floor_spread"],
                    "largest_fraction": max(variant["floor_fraction"].values()),
                }
            )
    summary = {}
    for precision, rows in floors.items():
        rates = [r["floor_images_per_s"] for r in rows]
        summary[precision] = {
            "runs": rows,
            "spread_between_runs": round((max(rates) - min(rates)) / statistics.median(rates), 4),
        }
    return {"machine": machine(), "runs": runs, "precisions": summary}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    header = [
        "precision",
        "floor, images/s (runs)",
        "spread between runs",
        "spread within a run",
        "largest fraction of the floor",
    ]
    return markdown(
        header,
        (
            [
                precision,
                per_run((r["floor_images_per_s"] for r in s["runs"]), "{}"),
                f"{s['spread_between_runs']:.1%}",
                f"{max(r['floor_spread'] for r in s['runs']):.1%} (largest)",
                f"{max(r['largest_fraction'] for r in s['runs']):.3f}",
            ]
            for precision, s in result["precisions"].items()
        ),
    )


if __name__ == "__main__":
    main(__file__, measure, table)
