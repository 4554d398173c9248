"""Consume a corpus: `load` (parquet via datasets) and `stream` (webdataset), one decoder.

Both yield dicts of torch tensors: every `genome_*` array, `label`, `is_adversarial`,
`mixed_label`, plus `attack` and `key` strings. No pickle is decoded anywhere: npy members are
read with allow_pickle=False and webdataset's own decoders are not used.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.genome import genome_inputs
from afg_datasets.layout import sha256_file
from afg_datasets.records import CLEAN
from afg_datasets.verify import CorpusError, load_manifest, require_files, split_files

META_FIELDS = ("key", "attack", "label", "is_adversarial", "mixed_label")
NPY_DTYPES = ("<f4", "<f2", "<f8", "|u1", "<i8")  # what a genome member may hold
MAX_MEMBER_BYTES = 256 << 20  # a single tar member larger than this is not a record's
MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension rule


def to_example(meta: Mapping[str, Any], genome: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The one decoding step shared by `load` and `stream`."""
    example = {
        name: torch.from_numpy(np.asarray(array, dtype=np.float32))
        for name, array in genome.items()
    }
    example["label"] = torch.tensor(int(meta["label"]))
    example["is_adversarial"] = torch.tensor(bool(meta["is_adversarial"]))
    example["mixed_label"] = torch.as_tensor(np.asarray(meta["mixed_label"], dtype=np.float32))
    example["attack"] = str(meta["attack"])
    example["key"] = str(meta["key"])
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
    path_or_repo_id: str | os.PathLike,
    config: str = "all",
    split: str = "train",
    verify: bool = True,
) -> AFGDataset:
    """A torch-ready dataset from a local corpus directory or a Hub repo id."""
    from datasets import load_dataset

    check_split(path_or_repo_id, config, split, verify)
    return AFGDataset(load_dataset(str(path_or_repo_id), config, split=split))


def check_split(path_or_repo_id: str | os.PathLike, config: str, split: str, verify: bool) -> None:
    """For a local corpus, the parquet files of `config` and `split` against the manifest."""
    local = Path(path_or_repo_id)
    if not (verify and local.is_dir()):
        return
    manifest = load_manifest(local)
    files = split_files(local, manifest, split, "parquet")
    read = [p for p in files if config == "all" or p.parent.name in (CLEAN, config)]
    require_files(local, manifest, read)


def dataloader(
    path_or_repo_id: str | os.PathLike,
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
    from datasets import load_dataset

    check_split(path_or_repo_id, config, split, verify)
    data = load_dataset(str(path_or_repo_id), config, split=split)
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
    )


class ArrowBatches(torch.utils.data.Dataset):
    """Item [i, j, ...] is the batch of those rows, read from the (memory-mapped) Arrow table in
    one slice (consecutive rows) or one take, and formatted column-wise by datasets' numpy
    formatter. Indexing a `datasets.Dataset` with a list gathers row by row, 4x slower."""

    def __init__(self, data):
        from datasets.formatting import NumpyFormatter

        self.data = data
        self.formatter = NumpyFormatter(features=data.features)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows: list[int]) -> dict[str, Any]:
        if self.data._indices is not None:  # a shuffled or filtered view: datasets gathers
            return _like_load(self.data.with_format("numpy")[rows])
        table = getattr(self.data.data, "table", self.data.data)
        if rows == list(range(rows[0], rows[0] + len(rows))):
            part = table.slice(rows[0], len(rows))
        else:
            part = table.take(rows)
        return _like_load(self.formatter.format_batch(part))


def _like_load(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """A numpy batch as `load` types it: tensors (float32 genomes and mixed labels), strings
    as lists."""
    out: dict[str, Any] = {}
    for name, column in batch.items():
        if column.dtype.kind in "OUS":
            out[name] = column.tolist()
        elif name.startswith("genome_") or name == "mixed_label":
            out[name] = torch.from_numpy(np.ascontiguousarray(column, dtype=np.float32))
        else:
            out[name] = torch.from_numpy(np.ascontiguousarray(column))
    return out


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Examples -> one batch dict: tensors stacked, strings as lists."""
    return {
        name: torch.stack([e[name] for e in examples])
        if torch.is_tensor(examples[0][name])
        else [e[name] for e in examples]
        for name in examples[0]
    }


def shard_hashes(dir_or_urls: str | os.PathLike | list[str], split: str) -> dict[str, str | None]:
    """Shard url -> its manifest sha256 (None: bare urls, not checked). For a corpus directory,
    exactly the manifest's shards of `split` (never a glob); the manifest is read once."""
    if isinstance(dir_or_urls, (list, tuple)):
        return dict.fromkeys(dir_or_urls)
    root = Path(dir_or_urls)
    if not root.is_dir():
        return {str(dir_or_urls): None}
    manifest = load_manifest(root)
    sha = {str(root / e["path"]): e["sha256"] for e in manifest["files"]}
    urls = {str(p): sha[str(p)] for p in split_files(root, manifest, split, "wds")}
    if not urls:
        raise CorpusError(f"{root}: the manifest lists no webdataset shards for {split!r}")
    return urls


def decode_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A raw webdataset sample (bytes members) -> example; errors name the shard."""
    where = f"{sample.get('__url__', '?')} (sample {sample.get('__key__', '?')})"
    try:
        meta = json.loads(sample["json"])
        genome = {
            name[: -len(".npy")]: decode_npy(data)
            for name, data in sample.items()
            if name.endswith(".npy")
        }
        if not genome:
            raise KeyError("no .npy genome members")
        return to_example(meta, genome)
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise CorpusError(f"corrupt webdataset sample in {where}: {err}") from None


def decode_npy(data: bytes) -> np.ndarray:
    """An .npy member, its header checked before any memory is reserved: a known numeric dtype
    (never object, so never pickle) and a shape whose size matches the bytes present."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.str not in NPY_DTYPES:
        raise ValueError(f"npy dtype {dtype.str} is not one of {NPY_DTYPES}")
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize != len(data) - stream.tell():
        raise ValueError(f"npy header says shape {shape} but {len(data) - stream.tell()} bytes")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def tar_samples(urls: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Shard urls -> webdataset samples ({__key__, __url__, ext: bytes}). Unlike a bare tar
    reader this refuses what a corpus never holds (non-regular or huge members) and a shard
    cut short: a complete tar ends with zero blocks, a shard truncated at a member boundary
    does not."""
    from webdataset import gopen

    for item in urls:
        url = item["url"]
        with gopen(url, "rb") as raw:
            tracked = _TailTracker(raw)
            try:
                with tarfile.open(fileobj=tracked, mode="r|") as tar:
                    yield from _group_members(tar, url)
            except tarfile.TarError as err:
                raise CorpusError(f"{url}: unreadable tar shard: {err}") from None
            tracked.read()  # the zero padding after the end-of-archive blocks
            if not tracked.ends_with_zero_blocks():
                raise CorpusError(f"{url}: truncated shard (no end-of-archive marker)")


def _group_members(tar: tarfile.TarFile, url: str) -> Iterator[dict[str, Any]]:
    sample: dict[str, Any] = {}
    for member in tar:
        match = MEMBER.match(member.name)
        if not member.isfile() or not match or member.size > MAX_MEMBER_BYTES:
            raise CorpusError(f"{url}: member {member.name!r} is not a record file")
        key, ext = match.groups()
        if sample and sample["__key__"] != key:
            yield sample
            sample = {}
        sample.setdefault("__key__", key)
        sample["__url__"] = url
        handle = tar.extractfile(member)
        sample[ext] = handle.read() if handle else b""
    if sample:
        yield sample


class _TailTracker(io.RawIOBase):
    """A read-only stream that remembers its last 1024 bytes."""

    def __init__(self, raw):
        self.raw, self.tail = raw, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size) if size is not None and size >= 0 else self.raw.read()
        self.tail = (self.tail + data)[-1024:]
        return data

    def ends_with_zero_blocks(self) -> bool:
        return len(self.tail) == 1024 and not self.tail.strip(b"\0")


def _checked_urls(shards: dict[str, str | None]) -> Iterator[dict[str, str]]:
    """Each listed shard's sha256 is checked against the manifest before it is read."""
    for url, expected in shards.items():
        if expected is not None and not Path(url).is_file():
            raise CorpusError(f"{url}: listed in the manifest but missing")
        if expected is not None and sha256_file(Path(url)) != expected:
            raise CorpusError(f"{url}: sha256 differs from the manifest (corrupt or tampered)")
        yield {"url": url}


class _ShardCheck:
    """Pipeline stage: the shards this process reads, each checked before it is read."""

    def __init__(self, shards: dict[str, str | None]):
        self.shards = shards

    def __call__(self, urls: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
        return _checked_urls({u["url"]: self.shards[u["url"]] for u in urls})


def stream(
    dir_or_urls: str | os.PathLike | list[str], split: str = "train", batch_size: int | None = None
):
    """A webdataset pipeline yielding the same dicts as `load` (or, with `batch_size`, batches
    as `dataloader` does), for corpora too big for disk. Shards are split across ranks and
    DataLoader workers (webdataset's split_by_node / split_by_worker), so no record is read
    twice; each process checks the sha256 of the shards it reads."""
    import webdataset as wds

    shards = shard_hashes(dir_or_urls, split)
    stages = [
        wds.SimpleShardList(list(shards)),
        wds.split_by_node,
        wds.split_by_worker,
        _ShardCheck(shards),
        tar_samples,
        wds.map(decode_sample),
    ]
    if batch_size:
        stages.append(wds.batched(batch_size, collation_fn=collate, partial=True))
    return wds.DataPipeline(*stages)


__all__ = [
    "AFGDataset",
    "CorpusError",
    "collate",
    "dataloader",
    "decode_sample",
    "load",
    "stream",
    "to_example",
]
