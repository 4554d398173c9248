"""`afg bench-loader`: the consumers against datasets' own readers (figures, not tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from afg_datasets.genome import genome_inputs
from afg_datasets.loader import META_FIELDS, dataloader, load, stream
from afg_datasets.verify import load_manifest, split_files


def _interleaved_medians(
    runs: dict[str, Callable[[], int]], repeats: int, records: int
) -> dict[str, float]:
    """Median seconds per reader, the readers taking turns in each round (a machine that
    slows down for a while then slows all of them alike); every pass must count `records`."""
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            count = run()
            timings[name].append(time.perf_counter() - start)
            if count != records:
                raise RuntimeError(f"{name} yielded {count} records, manifest says {records}")
    return {name: statistics.median(seconds) for name, seconds in timings.items()}


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
    `stream_batched_verified` adds the per-shard sha256 a stream pays by default. Each reader
    is made once and iterated `repeats` times, as a training loop iterates it per epoch."""
    from datasets import load_dataset

    root = Path(root)
    manifest = load_manifest(root)
    parquet = split_files(root, manifest, split)
    tars = split_files(root, manifest, split, "webdataset")
    records = manifest["splits"][split]["records"]
    table = load_dataset(str(root), "all", split=split)  # the datasets cache, built untimed
    columns = [*META_FIELDS, *genome_inputs(table.column_names)]
    as_numpy = table.select_columns(columns).with_format("numpy")
    as_torch = table.select_columns(columns).with_format("torch")
    loader = dataloader(root, split=split, batch_size=batch_size, verify=False)
    dataset = load(root, split=split, verify=False)
    streamed = stream(root, split, batch_size, verify=False)
    verified = stream(root, split, batch_size)
    one_by_one = stream(root, split, verify=False)
    runs = {
        "datasets_numpy_batched": lambda: _count_batches(as_numpy.iter(batch_size=batch_size)),
        "datasets_torch": lambda: _count(as_torch),
        "dataloader": lambda: _count_batches(loader),
        "stream_batched": lambda: _count_batches(streamed),
        "stream_batched_verified": lambda: _count_batches(verified),
        "load": lambda: _count(dataset),
        "stream": lambda: _count(one_by_one),
    }
    medians = _interleaved_medians(runs, repeats, records)
    readers: dict[str, dict[str, float]] = {}
    for name, seconds in medians.items():
        size = sum(p.stat().st_size for p in (tars if name.startswith("stream") else parquet))
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
        "torch_threads": torch.get_num_threads(),
        "readers": readers,
        "stream_batched_over_dataloader": round(ratio, 4),
    }
