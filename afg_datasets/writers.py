"""Shard writers: one parquet or webdataset file, written under a temp name, renamed when done.

A shard only gets its final name once it is complete; `.partial` files are never read by the
standard readers' patterns and are removed before their task is run again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from afg_datasets.layout import ROW_GROUP_BYTES, partial_path

# Fixed tar header fields make shards byte-reproducible.
TAR_OWNER = "afg"
TAR_MTIME = 0


@dataclass(frozen=True)
class ShardFile:
    path: Path
    rows: int


class _ShardWriter:
    """Common lifecycle: open `<path>.partial` on first write, close -> rename, abort -> delete."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        self._open_now = False

    def _ensure_open(self) -> None:
        if not self._open_now:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open(partial_path(self.path))
            self._open_now = True

    def close(self) -> ShardFile:
        """Finish the shard and give it its final name."""
        self._ensure_open()
        self._close()
        os.replace(partial_path(self.path), self.path)
        return ShardFile(self.path, self.rows)

    def abort(self) -> None:
        """Drop what this writer wrote (used when a task fails). Closing may fail again (the
        disk that filled up is still full); the temporary file goes in any case."""
        try:
            if self._open_now:
                self._close()
        except Exception:  # noqa: BLE001, S110 - the file is discarded; its close error is moot
            pass
        finally:
            partial_path(self.path).unlink(missing_ok=True)

    def _open(self, path: Path) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def rows_per_group(table: pa.Table, limit: int = ROW_GROUP_BYTES) -> int:
    """The most rows of `table` whose Arrow (uncompressed) bytes stay within `limit`: a bound
    on the row group's parquet bytes too, since every column is stored no larger than that
    (PNG bytes as they are, the rest compressed). One row at the least."""
    if table.nbytes <= limit:  # the usual batch: one row group, no per-row sizes needed
        return max(table.num_rows, 1)
    widest = max(table.slice(i, 1).nbytes for i in range(table.num_rows))
    return max(1, limit // widest)


class ParquetShardWriter(_ShardWriter):
    """One parquet file, zstd, with a page index; each written batch is one row group, or
    several where it exceeds ROW_GROUP_BYTES."""

    def __init__(self, path: Path, schema: pa.Schema):
        super().__init__(path)
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None

    def _open(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(
            path, self.schema, compression="zstd", write_page_index=True
        )

    def _close(self) -> None:
        self._writer.close()

    def write(self, table: pa.Table) -> None:
        self._ensure_open()
        self._writer.write_table(table, row_group_size=rows_per_group(table))
        self.rows += table.num_rows


class WebDatasetShardWriter(_ShardWriter):
    """One tar with fixed owner, mode and mtime; members sorted per sample."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._file: BinaryIO | None = None
        self._tar: wds.TarWriter | None = None

    def _open(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in _close
        self._tar = wds.TarWriter(
            self._file, user=TAR_OWNER, group=TAR_OWNER, mode=0o644, mtime=TAR_MTIME, encoder=False
        )

    def _close(self) -> None:
        self._tar.close()
        self._file.close()

    def write(self, samples: list[dict[str, bytes | str]]) -> None:
        self._ensure_open()
        for sample in samples:
            self._tar.write(sample)
            self.rows += 1
