"""`afg bench-loader`: the consumers against datasets' own readers (figures, not tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from afg_datasets.genome import genome_inputs
from afg_datasets.loader import META_FIELDS, dataloader, load, stream
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


def _count_batches(batches: Iterable[dict[str, Any]]) -> int:
    return sum(len(batch["key"]) for batch in batches)


def bench_loaders(
    root: str | Path, split: str = "train", repeats: int = 3, batch_size: int = 256
) -> dict[str, Any]:
    """Records/s and MB/s on the same columns (metadata + genomes): `dataloader`, batched
    `stream`, and `load` record by record, against datasets' own numpy-batched iteration (the
    anchor: what a library reader does without a decoder) and datasets' torch format. Like the
    anchor, the readers run without hashing their files (`verify=False`, checked once before);
    `stream_batched_verified` adds the per-shard sha256 a stream pays by default."""
    from datasets import load_dataset

    root = Path(root)
    manifest = load_manifest(root)
    parquet = split_files(root, manifest, split, "parquet")
    tars = split_files(root, manifest, split, "wds")
    records = manifest["splits"][split]["records"]
    table = load_dataset(str(root), "all", split=split)  # the datasets cache, built untimed
    columns = [*META_FIELDS, *genome_inputs(table.column_names)]
    as_numpy = table.select_columns(columns).with_format("numpy")
    as_torch = table.select_columns(columns).with_format("torch")
    loader = dataloader(root, split=split, batch_size=batch_size, verify=False)
    dataset = load(root, split=split, verify=False)
    runs = {
        "datasets_numpy_batched": (
            lambda: _count_batches(as_numpy.iter(batch_size=batch_size)),
            parquet,
        ),
        "datasets_torch": (lambda: _count(as_torch), parquet),
        "dataloader": (lambda: _count_batches(loader), parquet),
        "stream_batched": (
            lambda: _count_batches(stream(root, split, batch_size, verify=False)),
            tars,
        ),
        "stream_batched_verified": (
            lambda: _count_batches(stream(root, split, batch_size)),
            tars,
        ),
        "load": (lambda: _count(dataset), parquet),
        "stream": (lambda: _count(stream(root, split, verify=False)), tars),
    }
    readers: dict[str, dict[str, float]] = {}
    for name, (run, files) in runs.items():
        seconds, count = _median_seconds(run, repeats)
        if count != records:
            raise RuntimeError(f"{name} yielded {count} records, manifest says {records}")
        size = sum(p.stat().st_size for p in files)
        readers[name] = {
            "seconds": round(seconds, 4),
            "records_per_s": round(records / seconds, 1),
            "mb_per_s": round(size / 1e6 / seconds, 1),
        }
    anchor = readers["datasets_numpy_batched"]["records_per_s"]
    for reader in readers.values():
        reader["fraction_of_anchor"] = round(reader["records_per_s"] / anchor, 4)
    ratio = readers["stream_batched"]["records_per_s"] / readers["dataloader"]["records_per_s"]
    return {
        "corpus": str(root),
        "split": split,
        "records": records,
        "batch_size": batch_size,
        "repeats": repeats,
        "readers": readers,
        "stream_batched_over_dataloader": round(ratio, 4),
    }
