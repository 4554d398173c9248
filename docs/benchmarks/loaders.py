"""The readers, measured on two corpus shapes: `afg bench-loader DIR --repeats 9` (each reader
made once and iterated 9 times, the readers taking turns, none hashing its files unless named
so; median of the 9 passes) `--runs` times, on the train split of a 2,000-source MNIST corpus
(`afg build-shards mnist --limit 2000`, its builder's genome) and of the default digits corpus
(`activations`). The anchor is datasets' numpy-batched iteration of the same columns. Writes
loaders.json beside this script and prints the table that docs/benchmarks.md shows.

    python docs/benchmarks/loaders.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from figures import afg, machine, main, markdown

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
CORPORA = {
    "mnist --limit 2000": ["mnist", "--source-root", str(MNIST), "--limit", "2000"],
    "default (digits)": [],
}
READERS = {  # bench-loader's reader -> what the table calls it
    "datasets_numpy_batched": "datasets, numpy format, `iter(batch_size=256)` (the anchor)",
    "dataloader": "`afg_datasets.dataloader(..., batch_size=256)`",
    "stream_batched": "`afg_datasets.stream(..., batch_size=256)`",
    "stream_batched_verified": "the same, hashing each shard (the default)",
    "load": "`afg_datasets.load`, record by record",
    "stream": "`afg_datasets.stream`, record by record",
    "datasets_torch": "datasets, torch format, record by record",
}
TARGETS = {"dataloader": 1.0, "stream_over_dataloader": 0.5}


def measure(runs: int) -> dict:
    shapes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in CORPORA.items():
            corpus = Path(tmp) / name.split()[0]
            afg("build-shards", *args, "--out", str(corpus), "--no-progress")
            reports = [
                json.loads(afg("bench-loader", str(corpus), "--repeats", "9", "--json"))
                for _ in range(runs)
            ]
            shapes[name] = {
                "records": reports[0]["records"],
                "readers": {
                    reader: [r["readers"][reader]["records_per_s"] for r in reports]
                    for reader in READERS
                },
                "stream_over_dataloader": [r["stream_batched_over_dataloader"] for r in reports],
            }
    return {"machine": machine(), "runs": runs, "shapes": shapes, "targets": TARGETS}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    shapes = result["shapes"].values()
    header = ["reader"]
    header += [f"{name}: records/s, median ({result['runs']} runs)" for name in result["shapes"]]
    rows = []
    for reader, label in READERS.items():
        cells = [label]
        for shape in shapes:
            anchor = statistics.median(shape["readers"]["datasets_numpy_batched"])
            median = statistics.median(shape["readers"][reader])
            cells.append(f"{median:,.0f} ({median / anchor:.2f} of the anchor)")
        rows.append(cells)
    target = TARGETS["stream_over_dataloader"]
    rows.append(
        [f"batched `stream` over `dataloader` (target >= {target})"]
        + [f"{statistics.median(s['stream_over_dataloader']):.2f}" for s in shapes]
    )
    rows.append(["train records", *(f"{s['records']:,}" for s in shapes)])
    return markdown(header, rows)


if __name__ == "__main__":
    main(__file__, measure, table)
