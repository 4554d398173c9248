"""Consume a corpus: `load` (parquet via datasets) and `stream` (webdataset), one decoder.

Both yield dicts of torch tensors: every `genome_*` array, `label`, `is_adversarial`,
`mixed_label`, plus `attack` and `key` strings. No pickle is decoded anywhere: npy members are
read with allow_pickle=False and webdataset's own decoders are not used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import datasets

from afg_datasets.corpus.columns import numpy_column
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.manifest import check_place
from afg_datasets.corpus.shardcolumns import float32_tensor, rebatch, shard_chunks
from afg_datasets.corpus.tarshards import ShardBuffer
from afg_datasets.errors import CorpusError
from afg_datasets.formats import TABLE_FORMAT
from afg_datasets.records import READ_COLUMNS, READ_TYPES, genome_inputs

META_FIELDS = READ_COLUMNS  # what a training loop reads (`records.RECORD_COLUMNS`)


def to_example(meta: Mapping[str, Any], genome: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The one decoding step shared by `load` and `stream`: genomes as float32 tensors, each
    read column as its `records.READ_TYPES` says."""
    example = {
        name: torch.from_numpy(np.asarray(array, dtype=np.float32))
        for name, array in genome.items()
    }
    for name, kind in READ_TYPES.items():
        value = meta[name]
        example[name] = str(value) if kind == "str" else torch.as_tensor(np.asarray(value, kind))
    return example


class AFGDataset(torch.utils.data.Dataset):
    """Map-style dataset over one config and split of a corpus (parquet, via datasets)."""

    def __init__(self, hf_dataset):
        self.genome_names = genome_inputs(hf_dataset.column_names)
        # Only the columns the recognizer needs; the PNG column is never decoded.
        self.data = hf_dataset.select_columns([*META_FIELDS, *self.genome_names]).with_format(
            "numpy"
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.data[index]
        return to_example(row, {name: row[name] for name in self.genome_names})

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.data.iter(batch_size=1024):
            for i in range(len(batch["key"])):
                yield to_example(
                    {k: batch[k][i] for k in META_FIELDS},
                    {n: batch[n][i] for n in self.genome_names},
                )


def load(
    path_or_repo_id: Corpus | str | os.PathLike,
    config: str = "all",
    split: str = "train",
    verify: bool = True,
) -> AFGDataset:
    """A torch-ready dataset from a local corpus (or its folder) or a Hub repo id."""
    return AFGDataset(hf_split(Corpus.of(path_or_repo_id), config, split, verify))


def hf_split(corpus: Corpus, config: str, split: str, verify: bool) -> datasets.Dataset:
    """One config and split as a `datasets.Dataset` (memory-mapped Arrow): exactly the
    manifest's parquet files of it (`Corpus.paths`), checked against the manifest first."""
    from datasets import load_dataset

    paths = corpus.paths(split=split, config=config)
    if not paths:
        raise CorpusError(f"{corpus.root}: no {config!r} records in its {split} split")
    if verify:
        corpus.require(paths)
    files = {split: [str(path) for path in paths]}
    return load_dataset(TABLE_FORMAT.name, data_files=files, split=split)


def dataloader(
    path_or_repo_id: Corpus | str | os.PathLike,
    config: str = "all",
    split: str = "train",
    batch_size: int = 256,
    shuffle: bool = False,
    num_workers: int = 0,
    columns: list[str] | None = None,
    seed: int = 0,
    verify: bool = True,
) -> torch.utils.data.DataLoader:
    """A torch DataLoader of batch dicts (stacked tensors; `attack`/`key` as lists), read
    straight from Arrow: one `take` per batch, no per-record Python. Genomes are float32, as
    in `load`; `shuffle` is seeded."""
    data = hf_split(Corpus.of(path_or_repo_id), config, split, verify)
    names = list(columns) if columns else [*META_FIELDS, *genome_inputs(data.column_names)]
    unknown = sorted(set(names) - set(data.column_names))
    if unknown:
        raise CorpusError(f"no column(s) {unknown}; columns: {data.column_names}")
    data = data.select_columns(names)
    order = (
        torch.utils.data.RandomSampler(data, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.utils.data.SequentialSampler(data)
    )
    return torch.utils.data.DataLoader(
        ArrowBatches(data),
        batch_size=None,  # the sampler yields whole batches of indices: one Arrow read each
        sampler=torch.utils.data.BatchSampler(order, batch_size, drop_last=False),
        num_workers=num_workers,
        collate_fn=_as_is,  # the batches are built already (torch's default walks every key)
    )


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


class ArrowBatches(torch.utils.data.Dataset):
    """Item [i, j, ...] is the batch of those rows, read from the (memory-mapped) Arrow table in
    one slice (consecutive rows) or one take, and formatted column-wise by datasets' numpy
    formatter. Indexing a `datasets.Dataset` with a list gathers row by row instead.
    `data` is a split as `load_dataset` gives it (columns selected; never shuffled or
    filtered, so its rows are its table's rows: `dataloader` shuffles with its sampler)."""

    def __init__(self, data):
        from datasets.formatting import NumpyFormatter

        self.data = data
        self.formatter = NumpyFormatter(features=data.features)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows: list[int]) -> dict[str, Any]:
        table = getattr(self.data.data, "table", self.data.data)
        if rows == list(range(rows[0], rows[0] + len(rows))):
            part = table.slice(rows[0], len(rows))
        else:
            part = table.take(rows)
        return _like_load({name: self._column(part, name) for name in part.column_names})

    def _column(self, part, name: str) -> np.ndarray:
        """One column as numpy: the column reader's fast paths, else datasets' formatter
        (which inspects lists row by row)."""
        column = numpy_column(part.column(name))
        if column is None:
            column = self.formatter.format_batch(part.select([name]))[name]
        return column


def _like_load(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """A numpy batch as `load` types it: tensors (float32 genomes and mixed labels), strings
    as lists."""
    out: dict[str, Any] = {}
    for name, column in batch.items():
        if column.dtype.kind in "OUS":
            out[name] = column.tolist()
        elif name.startswith("genome_") or READ_TYPES.get(name) == "float32":
            out[name] = float32_tensor(column)
        else:  # a copy: Arrow hands out read-only views
            out[name] = torch.from_numpy(np.array(column))
    return out


def shard_hashes(
    dir_or_urls: Corpus | str | os.PathLike | list[str], split: str
) -> dict[str, str | None]:
    """Shard url -> its manifest sha256 (None: bare urls, not checked). For a corpus directory,
    exactly the manifest's shards of `split` (never a glob); the manifest is read once."""
    if isinstance(dir_or_urls, (list, tuple)):
        return dict.fromkeys(dir_or_urls)
    if not isinstance(dir_or_urls, Corpus) and not Path(dir_or_urls).is_dir():
        return {str(dir_or_urls): None}
    corpus = Corpus.of(dir_or_urls)
    entries = corpus.files("webdataset", split)
    if not entries:
        raise CorpusError(f"{corpus.root}: the manifest lists no webdataset shards for {split!r}")
    for entry in entries:  # verify's own rule, before a byte is read
        problem = check_place(corpus.root, entry)
        if problem:
            raise CorpusError(f"corpus {str(corpus.root)!r}: {problem}")
    return {str(corpus.root / e["path"]): e["sha256"] for e in entries}


class _ShardColumns:
    """Pipeline stage: each shard this process reads -> its records as column chunks (sha256
    checked on the bytes read, `shardcolumns.shard_chunks`). Shards are read into a buffer
    that serves every shard and every pass over this stream: fresh memory for each shard
    costs more than its parse. An iteration takes a spare buffer (or makes one) and returns
    it at its end, so iterations that overlap never share one."""

    def __init__(self, shards: dict[str, str | None]):
        self.shards = shards
        self._spare: list[ShardBuffer] = []

    def __call__(self, urls: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
        try:
            buffer = self._spare.pop()  # list.pop is atomic: no two iterations get one buffer
        except IndexError:
            buffer = ShardBuffer()
        try:
            for item in urls:
                yield from shard_chunks(item["url"], self.shards[item["url"]], buffer)
        finally:
            self._spare.append(buffer)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get no copy of a buffer
        return {"shards": self.shards, "_spare": []}


def _records(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Batches -> records; each tensor column is split by one `unbind` (views, in C)."""
    for batch in batches:
        columns = [c.unbind(0) if isinstance(c, torch.Tensor) else c for c in batch.values()]
        for values in zip(*columns, strict=True):
            yield dict(zip(batch, values, strict=True))


def stream(
    dir_or_urls: Corpus | str | os.PathLike | list[str],
    split: str = "train",
    batch_size: int | None = None,
    verify: bool = True,
):
    """A webdataset pipeline yielding the same dicts as `load` (or, with `batch_size`, batches
    as `dataloader` does), for corpora too big for disk. Shards are split across ranks and
    DataLoader workers (webdataset's split_by_node / split_by_worker), so no record is read
    twice; each process checks the sha256 of the shards it reads (`verify=False`: not the
    hashes; every structural check stays). Shards are read as columns (`tarshards` finds the
    members, `shardcolumns` gathers them)."""
    import webdataset as wds

    shards = shard_hashes(dir_or_urls, split)
    if not verify:
        shards = dict.fromkeys(shards)
    batches = functools.partial(rebatch, batch_size=batch_size or 1024)
    stages = [
        wds.SimpleShardList(list(shards)),
        wds.split_by_node,
        wds.split_by_worker,
        _ShardColumns(shards),
        batches,
    ]
    return wds.DataPipeline(*stages, *([] if batch_size else [_records]))


__all__ = ["AFGDataset", "CorpusError", "dataloader", "load", "stream", "to_example"]
