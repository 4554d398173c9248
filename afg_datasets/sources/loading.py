"""Decoding a task's batches ahead of the GPU: torch DataLoader worker processes read the
source's items while the attacks run. Order is the order asked for, whatever the worker count,
so the bytes of a corpus never depend on it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset

from afg_datasets.sources.base import Decoded, ImageReader


class _Batches(Dataset):
    """Item k is batch k of a task, decoded."""

    def __init__(self, reader: ImageReader, batches: Sequence[np.ndarray]):
        self.reader, self.batches = reader, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Decoded:
        return self.reader.read(self.batches[k])


def _as_is(item: Decoded) -> Decoded:
    return item


def loader_workers(reader: ImageReader, requested: int, batches: int) -> int:
    """Worker processes worth starting: none for in-memory sources or inside a daemonic
    process (which may not start children), at most one per batch."""
    if not reader.decodes or multiprocessing.current_process().daemon:
        return 0
    return max(0, min(requested, batches))


def decode_batches(
    reader: ImageReader, batches: Sequence[np.ndarray], workers: int
) -> Iterator[Decoded]:
    """Each batch decoded, in order; `workers` processes decode ahead (0: in this process)."""
    workers = loader_workers(reader, workers, len(batches))
    if workers == 0:
        yield from (reader.read(b) for b in batches)
        return
    yield from DataLoader(
        _Batches(reader, batches), batch_size=None, num_workers=workers, collate_fn=_as_is
    )
