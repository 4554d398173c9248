"""Streaming sources, measured by `afg bench-build --what source` (`--runs` times, alone): a
synthetic ImageNet-style JPEG folder (100 classes, 200-500 px) of N = 2,000 and of 10N = 20,000
images, each built with `afg build-shards imagenet --model resnet18 --checkpoint CKPT --attacks
fgsm --limit 64` (random weights); the peak RSS of both, the listing (setup before any
decoding), when the first task starts after launch, and decoding at 224 px with 0 and 2 loader
workers. Writes streaming_sources.json beside this script and prints the table that
docs/benchmarks.md shows.

    python docs/benchmarks/streaming_sources.py [--runs 3]
"""

from __future__ import annotations

import json

from figures import afg, machine, main, markdown, median_runs

N = 2000


def measure(runs: int) -> dict:
    reports = [
        json.loads(afg("bench-build", "--what", "source", "--source-images", str(N), "--json"))[
            "source"
        ]
        for _ in range(runs)
    ]
    return {"machine": machine(), "images": N, "runs": reports}


def _each(result: dict, count: int, key: str, form: str = "{:.2f}") -> str:
    values = [run[f"n{count}"][key] for run in result["runs"]]
    return median_runs(values, form)


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    small, large, runs = result["images"], 10 * result["images"], result["runs"]
    ratios = [run["rss_ratio"] for run in runs]
    decode = {w: [run["decode_images_per_s"][f"workers_{w}"] for run in runs] for w in (0, 2)}
    rows = [
        [
            f"peak RSS, {small:,} vs {large:,} images (MB)",
            " / ".join(
                f"{run[f'n{small}']['peak_rss_mb']:.0f} vs {run[f'n{large}']['peak_rss_mb']:.0f}"
                for run in runs
            )
            + f": ratio {median_runs(ratios, '{:.3f}')}",
            "ratio <= 1.10",
        ],
        [f"listing {large:,} files, s", _each(result, large, "listing_seconds"), "<= 5 s"],
        [f"listing {small:,} files, s", _each(result, small, "listing_seconds"), ""],
        [
            f"first task starts after launch, {large:,} images, s",
            _each(result, large, "first_task_after_launch_s"),
            "",
        ],
        [
            f"first task starts after launch, {small:,} images, s",
            _each(result, small, "first_task_after_launch_s"),
            "",
        ],
        *(
            [
                f"decoding at 224 px, {w} loader workers, images/s",
                median_runs(v, "{:.0f}"),
                "",
            ]
            for w, v in decode.items()
        ),
    ]
    return markdown(["figure", "value", "target"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
