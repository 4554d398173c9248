"""Shard writers: parquet and webdataset, rotated by row count, temp name -> atomic rename.

A shard only gets its final name once it is complete; `.partial` files are never read by the
standard readers' patterns and are removed by the next build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

PARTIAL = ".partial"
# Fixed tar header fields make shards byte-reproducible.
TAR_OWNER = "afg"
TAR_MTIME = 0


@dataclass(frozen=True)
class ShardFile:
    path: Path
    rows: int


class _RotatingWriter:
    """Common rotation logic: subclasses open/append/close one physical shard."""

    def __init__(self, directory: Path, split: str, rows_per_shard: int):
        self.directory = directory
        self.split = split
        self.rows_per_shard = rows_per_shard
        self._finished: list[tuple[Path, int]] = []
        self._path: Path | None = None
        self._rows = 0

    def _partial_path(self, index: int) -> Path:
        return self.directory / f"{self.split}-{index:05d}{self.suffix}{PARTIAL}"

    def _ensure_open(self) -> None:
        if self._path is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self._partial_path(len(self._finished))
            self._open(self._path)
            self._rows = 0

    def _close_shard(self) -> None:
        if self._path is not None:
            self._close()
            self._finished.append((self._path, self._rows))
            self._path = None

    def _room(self) -> int:
        self._ensure_open()
        return self.rows_per_shard - self._rows

    def _advance(self, rows: int) -> None:
        self._rows += rows
        if self._rows >= self.rows_per_shard:
            self._close_shard()

    def close(self) -> list[ShardFile]:
        """Finish the open shard and give every shard its final name."""
        self._close_shard()
        total = len(self._finished)
        files = []
        for index, (partial, rows) in enumerate(self._finished):
            final = self.directory / self.final_name(index, total)
            os.replace(partial, final)
            files.append(ShardFile(final, rows))
        return files

    def abort(self) -> None:
        """Drop everything this writer wrote (used when a build fails)."""
        if self._path is not None:
            self._close()
            self._finished.append((self._path, self._rows))
            self._path = None
        for partial, _ in self._finished:
            partial.unlink(missing_ok=True)

    # subclass hooks
    suffix = ""

    def final_name(self, index: int, total: int) -> str:
        raise NotImplementedError

    def _open(self, path: Path) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class ParquetShardWriter(_RotatingWriter):
    """`<split>-NNNNN-of-NNNNN.parquet`, zstd, one row group per written batch."""

    suffix = ".parquet"

    def __init__(self, directory: Path, split: str, schema: pa.Schema, rows_per_shard: int):
        super().__init__(directory, split, rows_per_shard)
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None

    def final_name(self, index: int, total: int) -> str:
        return f"{self.split}-{index:05d}-of-{total:05d}.parquet"

    def _open(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def _close(self) -> None:
        self._writer.close()

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            take = min(self._room(), table.num_rows - offset)
            self._writer.write_table(table.slice(offset, take))
            offset += take
            self._advance(take)


class WebDatasetShardWriter(_RotatingWriter):
    """`<split>-NNNNN.tar` with fixed owner, mode and mtime; members sorted per sample."""

    suffix = ".tar"

    def __init__(self, directory: Path, split: str, rows_per_shard: int):
        super().__init__(directory, split, rows_per_shard)
        self._file: BinaryIO | None = None
        self._tar: wds.TarWriter | None = None

    def final_name(self, index: int, total: int) -> str:
        return f"{self.split}-{index:05d}.tar"

    def _open(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in _close
        self._tar = wds.TarWriter(
            self._file, user=TAR_OWNER, group=TAR_OWNER, mode=0o644, mtime=TAR_MTIME, encoder=False
        )

    def _close(self) -> None:
        self._tar.close()
        self._file.close()

    def write(self, samples: list[dict[str, bytes | str]]) -> None:
        for sample in samples:
            self._room()
            self._tar.write(sample)
            self._advance(1)
