"""Benchmarks that print figures (never timed tests): `afg bench-loader`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from afg_datasets.loader import load, stream
from afg_datasets.verify import load_manifest, split_files


def _median_seconds(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    timings, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), count


def _count(items: Iterable[Any]) -> int:
    return sum(1 for _ in items)


def _read_bytes(paths: list[Path]) -> Callable[[], int]:
    def run() -> int:
        for path in paths:
            with open(path, "rb") as handle:
                while handle.read(1 << 22):
                    pass
        return 0

    return run


def bench_loaders(root: str | Path, split: str = "train", repeats: int = 3) -> dict[str, Any]:
    """Records/s and MB/s of `load` and `stream`, each against a raw read of its own files."""
    root = Path(root)
    manifest = load_manifest(root)
    parquet = split_files(root, manifest, split, "parquet")
    tars = split_files(root, manifest, split, "wds")
    records = manifest["splits"][split]["records"]
    dataset = load(root, split=split, verify=False)  # builds the datasets cache once, untimed
    runs = {
        "load": (lambda: _count(dataset), parquet),
        "stream": (lambda: _count(stream(root, split)), tars),
        "raw_parquet": (_read_bytes(parquet), parquet),
        "raw_wds": (_read_bytes(tars), tars),
    }
    readers: dict[str, dict[str, float]] = {}
    for name, (run, files) in runs.items():
        seconds, count = _median_seconds(run, repeats)
        if name in ("load", "stream") and count != records:
            raise RuntimeError(f"{name} yielded {count} records, manifest says {records}")
        size = sum(p.stat().st_size for p in files)
        readers[name] = {
            "seconds": round(seconds, 4),
            "records_per_s": round(records / seconds, 1),
            "mb_per_s": round(size / 1e6 / seconds, 1),
        }
    for name, raw in (
        ("load", "raw_parquet"),
        ("stream", "raw_wds"),
        ("raw_parquet", None),
        ("raw_wds", None),
    ):
        ceiling = readers[raw or name]["records_per_s"]
        readers[name]["fraction_of_raw"] = round(readers[name]["records_per_s"] / ceiling, 4)
    return {
        "corpus": str(root),
        "split": split,
        "records": records,
        "repeats": repeats,
        "readers": readers,
    }
