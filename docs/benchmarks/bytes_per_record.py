"""What a record weighs, before a build: `afg estimate --json`'s `bytes_per_record`, measured on
its calibration shards (256 sources, model cached), per format (parquet, webdataset) and column
group (image, genome, metadata; overhead: parquet footers, page headers and page index, tar
headers and padding), for the default digits corpus and for its `groupmap` and `groupbasis`
genomes (`--encoder`). Writes bytes_per_record.json beside this script and prints the table that
docs/scaling.md shows.

    python docs/benchmarks/bytes_per_record.py
"""

from __future__ import annotations

import json

from figures import afg, machine, main, markdown

SHAPES = {
    "default (`digits`: 32 px grey, `activations` of 3 layers)": [],
    "`--encoder groupmap` (4 groups of 8x8 per layer)": ["--encoder", "groupmap"],
    "`--encoder groupbasis` (4 directions per layer)": ["--encoder", "groupbasis"],
}
GROUPS = ("image", "genome", "metadata", "overhead")


def measure(runs: int) -> dict:
    shapes = {
        name: json.loads(afg("estimate", *args, "--json"))["bytes_per_record"]
        for name, args in SHAPES.items()
    }
    return {"machine": machine(), "command": "afg estimate [--encoder E] --json", "shapes": shapes}


def _format(groups: dict) -> str:
    parts = " / ".join(f"{groups.get(g, 0):,.0f}" for g in GROUPS)
    return f"{parts} = **{groups['total']:,.0f} B**"


def table(result: dict) -> str:
    """The markdown table of a result (what docs/scaling.md carries)."""
    rows = [
        [name, _format(b["parquet"]), _format(b["webdataset"]), f"{b['total']:,.0f} B"]
        for name, b in result["shapes"].items()
    ]
    header = [
        "corpus",
        "parquet: image / genome / metadata / overhead = total",
        "webdataset: the same",
        "all",
    ]
    return markdown(header, rows)


if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # bytes: the same every run
