"""`afg bench-loader`: the consumers against datasets' own readers (figures, not tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.loader import META_FIELDS, dataloader, load, stream
from afg_datasets.records import READ_TYPES, genome_inputs


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


def _count_rows(batches: Iterable[dict[str, Any]]) -> int:
    return sum(len(batch["label"]) for batch in batches)


def _as_float32(batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The anchor's conversion, as a user writes it: genomes and mixed labels as float32
    tensors (numpy's astype), the rest as they are."""
    for batch in batches:
        yield {
            name: torch.from_numpy(column.astype(np.float32))
            if name.startswith("genome_") or name == "mixed_label"
            else column
            for name, column in batch.items()
        }


@contextlib.contextmanager
def beside_build(work_dir: Path) -> Iterator[None]:
    """A default `afg build-shards` running (again and again) in another process meanwhile:
    the condition of a node that builds one corpus while training on another."""
    command = [sys.executable, "-m", "afg_datasets.cli", "build-shards", "--overwrite"]
    command += ["--out", str(work_dir / "background")]
    build = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        ["/bin/sh", "-c", 'while :; do "$@" >/dev/null 2>&1; done', "sh", *command],
        start_new_session=True,
    )
    try:
        time.sleep(20)  # past its start-up, into attacks and encoding
        yield
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()


def bench_loaders(
    root: str | Path,
    split: str = "train",
    repeats: int = 3,
    batch_size: int = 256,
    beside: bool = False,
) -> dict[str, Any]:
    """Records/s and MB/s on the same columns (metadata + genomes): `dataloader`, batched
    `stream`, and `load` record by record, against datasets' own numpy-batched iteration (the
    anchor: what a library reader does without a decoder) and datasets' torch format. Like the
    anchor, the readers run without hashing their files (`verify=False`, checked once before);
    `stream_batched_verified` adds the per-shard sha256 a stream pays by default. Each reader
    is made once and iterated `repeats` times, as a training loop iterates it per epoch. The
    `*_numeric` pair reads only what a training loop feeds a model (label, is_adversarial,
    mixed_label, genomes as float32). `beside`: timed while a build runs in another process."""
    from datasets import load_dataset

    corpus = Corpus.open(root)  # opened once: every reader below is made from it
    root = corpus.root
    parquet = corpus.paths(split=split)
    tars = corpus.paths("webdataset", split)
    records = corpus.records(split)
    table = load_dataset(str(root), "all", split=split)  # the datasets cache, built untimed
    columns = [*META_FIELDS, *genome_inputs(table.column_names)]
    as_numpy = table.select_columns(columns).with_format("numpy")
    as_torch = table.select_columns(columns).with_format("torch")
    loader = dataloader(corpus, split=split, batch_size=batch_size, verify=False)
    dataset = load(corpus, split=split, verify=False)
    streamed = stream(corpus, split, batch_size, verify=False)
    verified = stream(corpus, split, batch_size)
    one_by_one = stream(corpus, split, verify=False)
    numbers = [name for name, kind in READ_TYPES.items() if kind != "str"]
    numeric = [*numbers, *genome_inputs(table.column_names)]
    numeric_numpy = table.select_columns(numeric).with_format("numpy")
    numeric_loader = dataloader(
        root, split=split, batch_size=batch_size, columns=numeric, verify=False
    )
    runs = {
        "datasets_numpy_numeric": lambda: _count_rows(
            _as_float32(numeric_numpy.iter(batch_size=batch_size))
        ),
        "dataloader_numeric": lambda: _count_rows(numeric_loader),
        "datasets_numpy_batched": lambda: _count_batches(as_numpy.iter(batch_size=batch_size)),
        "datasets_torch": lambda: _count(as_torch),
        "dataloader": lambda: _count_batches(loader),
        "stream_batched": lambda: _count_batches(streamed),
        "stream_batched_verified": lambda: _count_batches(verified),
        "load": lambda: _count(dataset),
        "stream": lambda: _count(one_by_one),
    }
    with (
        tempfile.TemporaryDirectory() as work,
        beside_build(Path(work)) if beside else contextlib.nullcontext(),
    ):
        medians = _interleaved_medians(runs, repeats, records)
    readers: dict[str, dict[str, float]] = {}
    for name, seconds in medians.items():
        size = sum(p.stat().st_size for p in (tars if name.startswith("stream") else parquet))
        readers[name] = {
            "seconds": round(seconds, 4),
            "records_per_s": round(records / seconds, 1),
            "mb_per_s": round(size / 1e6 / seconds, 1),
        }
    for name, reader in readers.items():
        anchor = "datasets_numpy_numeric" if "numeric" in name else "datasets_numpy_batched"
        reader["fraction_of_anchor"] = round(
            reader["records_per_s"] / readers[anchor]["records_per_s"], 4
        )
    ratio = readers["stream_batched"]["records_per_s"] / readers["dataloader"]["records_per_s"]
    return {
        "corpus": str(root),
        "split": split,
        "records": records,
        "batch_size": batch_size,
        "repeats": repeats,
        "condition": "beside a running build" if beside else "idle",
        "torch_threads": torch.get_num_threads(),
        "readers": readers,
        "stream_batched_over_dataloader": round(ratio, 4),
    }
