"""The one column reader of a corpus's table shards: Arrow columns as numpy without per-row
Python work. `dataloader` (its Arrow batches), the recognizer's data and `afg show` read here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from afg_datasets.formats import TABLE_FORMAT


def read_table(paths: list[Path], columns: list[str] | None = None) -> pa.Table:
    """The shards' rows in file order (`columns`: only those)."""
    return pa.concat_tables([TABLE_FORMAT.read_columns(path, columns) for path in paths])


def find_row(paths: list[Path], key: str) -> dict[str, Any] | None:
    """The first record with `key` (only the row group holding it is decoded whole)."""
    for path in paths:
        row = TABLE_FORMAT.find_row(path, key)
        if row is not None:
            return row
    return None


def numpy_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """One column as numpy with no per-row work: strings, null-free numbers, equal-length and
    fixed-size lists of numbers, datasets' ArrayND. None for what needs a decoder (images,
    nulls, ragged lists)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if array.null_count:
        return None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.array(array.to_pylist(), dtype=object)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return array.to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(kind) and pa.types.is_primitive(kind.value_type):
        values = array.flatten()
        if values.null_count == 0:
            return values.to_numpy(zero_copy_only=False).reshape(len(array), kind.list_size)
    if pa.types.is_list(kind) and pa.types.is_primitive(kind.value_type):
        lengths = np.diff(array.offsets.to_numpy())
        if len(lengths) and (lengths == lengths[0]).all() and array.values.null_count == 0:
            start = array.offsets[0].as_py()
            values = array.values.slice(start, int(lengths.sum())).to_numpy()
            return values.reshape(len(array), int(lengths[0]))
    if isinstance(kind, pa.ExtensionType) and hasattr(array, "to_numpy"):
        return array.to_numpy()  # datasets' ArrayND: one reshape
    return None
