"""Parquet: `data/<attack>/<split>-TTTTT-of-NNNNN.parquet`, the format of the card's configs,
`datasets.load_dataset`, croissant and every column reader. zstd, a page index, row groups of
at most ROW_GROUP_BYTES."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Image

from afg_datasets.errors import CorpusError, first_line
from afg_datasets.formats.base import OutputFormat, ShardWriter
from afg_datasets.images import encode_png
from afg_datasets.records import RecordBatch, record_values

# Row groups are bounded in bytes so the Hub's dataset viewer reads any shard (it fails on row
# groups over ~286 MiB) whatever the image size; with the page index, a column is read page by
# page. Both are part of format 1.0.
ROW_GROUP_BYTES = 100 * 2**20


def rows_per_group(table: pa.Table, limit: int = ROW_GROUP_BYTES) -> int:
    """The most rows of `table` whose Arrow (uncompressed) bytes stay within `limit`: a bound
    on the row group's parquet bytes too, since every column is stored no larger than that
    (PNG bytes as they are, the rest compressed). One row at the least."""
    if table.nbytes <= limit:  # the usual batch: one row group, no per-row sizes needed
        return max(table.num_rows, 1)
    widest = max(table.slice(i, 1).nbytes for i in range(table.num_rows))
    return max(1, limit // widest)


def to_arrow(batch: RecordBatch, features) -> pa.Table:
    """A batch's records as a table of the corpus schema (`features`: datasets.Features):
    the record columns (`records.record_values`), then the genome's."""
    schema = features.arrow_schema
    values = record_values(batch, features["label"].num_classes)
    for name, array in batch.genome.items():
        values[name] = (
            [encode_png(a) for a in array] if isinstance(features[name], Image) else array
        )
    columns = {name: column_to_arrow(v, schema.field(name).type) for name, v in values.items()}
    return pa.Table.from_pydict(columns, schema=schema)


def column_to_arrow(values, arrow_type: pa.DataType) -> pa.Array:
    """One column's values as Arrow: PNG bytes as datasets' Image struct, [N, k] arrays as
    fixed-size lists, [N, *shape] arrays as ArrayND storage, the rest as they are."""
    if pa.types.is_struct(arrow_type):
        return pa.array([{"bytes": b, "path": None} for b in values], arrow_type)
    if isinstance(values, np.ndarray) and values.ndim > 1:
        if pa.types.is_fixed_size_list(arrow_type):
            return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
        return ndarray_to_arrow(values, arrow_type)
    return pa.array(values, arrow_type)


def ndarray_to_arrow(array: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """[N, *shape] -> the nested-list storage of a datasets ArrayND extension type."""
    flat: pa.Array = pa.array(np.ascontiguousarray(array).reshape(-1))
    for dim in reversed(array.shape[1:]):
        count = len(flat) // dim
        flat = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32) * dim), flat)
    return pa.ExtensionArray.from_storage(arrow_type, flat)


class ParquetWriter(ShardWriter):
    """Each written batch is one row group, or several where it exceeds ROW_GROUP_BYTES."""

    _writer: pq.ParquetWriter

    def _open(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(
            path, self.features.arrow_schema, compression="zstd", write_page_index=True
        )

    def _write(self, batch: RecordBatch) -> None:
        table = to_arrow(batch, self.features)
        self._writer.write_table(table, row_group_size=rows_per_group(table))

    def _close(self) -> None:
        self._writer.close()


class Parquet(OutputFormat):
    name = "parquet"
    folder = "data"
    suffix = ".parquet"
    media_type = "application/x-parquet"
    per_attack = True
    writer = ParquetWriter

    def rows(self, path: Path) -> int:
        try:
            return pq.read_metadata(path).num_rows
        except (pa.ArrowException, OSError) as err:
            raise CorpusError(f"not a readable parquet file ({first_line(err)})") from None

    def schema(self, path: Path) -> pa.Schema:
        return pq.read_schema(path).remove_metadata()

    def read_columns(self, path: Path, columns: list[str] | None) -> pa.Table:
        """A shard's columns (None: all), decoded on this thread by the file's own reader.
        Not `pq.read_table`: its dataset scanner releases fragments on Arrow's worker threads,
        and one that releases a Python extension type (datasets' ArrayND genome columns) after
        the interpreter began to exit aborts the process ("terminate called without an active
        exception", SIGABRT) once the command's work is done."""
        with pq.ParquetFile(path) as shard:
            return shard.read(columns=columns, use_threads=False)

    def find_row(self, path: Path, key: str) -> dict[str, Any] | None:
        """The first record with `key`: the key column row group by row group, then only the
        row group that holds it decoded."""
        with pq.ParquetFile(path) as shard:
            for group in range(shard.num_row_groups):
                keys = shard.read_row_group(group, columns=["key"], use_threads=False)
                row = pc.index(keys.column(0), key).as_py()
                if row >= 0:
                    table = shard.read_row_group(group, use_threads=False)
                    return table.slice(row, 1).to_pylist()[0]
        return None

    def arrow_bytes(self, path: Path) -> int:
        """A shard's uncompressed (Arrow) size, from its footer."""
        metadata = pq.read_metadata(path)
        return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))

    def column_bytes(self, path: Path) -> dict[str, int]:
        metadata = pq.read_metadata(path)
        sizes: dict[str, int] = defaultdict(int)
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                sizes[column.path_in_schema.split(".")[0]] += column.total_compressed_size
        return dict(sizes)

    def patterns(self, attack_folders: Iterable[str], split: str = "*") -> list[str]:
        """Globs of the shards of some attack folders (`*`: all) and one split (or all)."""
        return [f"{self.folder}/{d}/{split}-*{self.suffix}" for d in attack_folders]


PARQUET = Parquet()
