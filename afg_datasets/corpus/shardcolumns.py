"""A shard's records as columns, in chunks of CHUNK records: genome arrays gathered by offset
(each column's npy header parsed once: a known numeric dtype, never pickle), the JSON
metadata parsed by orjson a chunk at a time; then batches across shards, as torch.

Chunks keep every intermediate small: its memory is reused from chunk to chunk and stays in
cache, where one array per shard would be tens of MB of fresh memory for every shard (page
faults cost more than the parse). A shard is checked whole before any of its chunks is
returned.
"""

from __future__ import annotations

import io
import math
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import orjson
import torch

from afg_datasets.bounds import MAX_CLASSES
from afg_datasets.checks import count_text
from afg_datasets.corpus.tarshards import BLOCK, Buffer, ShardBuffer, checked_bytes, shard_members
from afg_datasets.errors import CorpusError
from afg_datasets.records import READ_TYPES

CHUNK = 256  # records per column chunk
NPY_DTYPES = ("<f4", "<f2", "<f8", "|u1", "<i8")  # what a genome member may hold
MAX_JSON_GATHER = 4 * BLOCK  # longer JSON members are sliced one by one


def read_shard(
    url: str, expected_sha256: str | None, buffer: ShardBuffer | None = None
) -> dict[str, Any]:
    """All records of one shard as one set of columns (see `shard_chunks`); {} if empty."""
    chunks = shard_chunks(url, expected_sha256, buffer)
    return _join(chunks) if chunks else {}


def shard_chunks(
    url: str, expected_sha256: str | None, buffer: ShardBuffer | None = None
) -> list[dict[str, Any]]:
    """The records of one shard as columns, CHUNK records a chunk: genome arrays [R, ...] in
    their stored dtype, `label` int64, `is_adversarial` bool, `mixed_label` float32,
    `attack` / `key` lists. Checked whole (sha256 when given, every header, member and
    record) before anything is returned; no column is a view of `buffer`."""
    with checked_bytes(url, expected_sha256, buffer or ShardBuffer()) as raw:
        raw, (records, members) = shard_members(raw, url)
        return _column_chunks(raw, records, members, url)


def _column_chunks(raw: Buffer, records: int, members: dict, url: str) -> list[dict[str, Any]]:
    if not records:
        return []  # an empty (but complete) shard
    genomes = {ext[: -len(".npy")]: members[ext] for ext in members if ext.endswith(".npy")}
    if "json" not in members or not genomes:
        raise CorpusError(f"{url}: every sample needs a .json and .npy genome members")
    npy = {name: _npy_column(raw, *genomes[name], url) for name in genomes}
    json_starts, json_sizes = members["json"]
    chunks = []
    for first in range(0, records, CHUNK):
        part = slice(first, first + CHUNK)
        columns = {name: _gather(raw, genomes[name][0][part], npy[name], url) for name in genomes}
        metas = _metas(raw, json_starts[part], json_sizes[part], first, url)
        chunks.append(columns | _meta_columns(metas, url))
    if len({chunk["mixed_label"].shape[1] for chunk in chunks}) != 1:
        raise CorpusError(f"{url}: mixed_label lengths differ between samples")
    return chunks


def _join(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Columns of consecutive chunks as one (strings as one list)."""
    names = set(chunks[0])
    if any(set(chunk) != names for chunk in chunks):
        raise CorpusError(f"shards with different columns: {[sorted(c) for c in chunks]}")
    return {
        name: [v for chunk in chunks for v in chunk[name]]
        if isinstance(column, list)
        else np.concatenate([chunk[name] for chunk in chunks])
        for name, column in chunks[0].items()
    }


def _class_id(value: Any, url: str) -> int:
    """A JSON label as a class id: an integer in 0..MAX_CLASSES-1, also spelled as an integral
    number or a string of digits; anything else (1e300, a bool, "x") is a CorpusError."""
    digits = isinstance(value, str) and count_text(value, MAX_CLASSES) is not None
    integral = isinstance(value, float) and value.is_integer() and abs(value) < MAX_CLASSES
    if digits or integral:
        value = int(value)
    if type(value) is not int or not 0 <= value < MAX_CLASSES:
        raise CorpusError(
            f"{url}: label {str(value)[:40]} is not a class id (an integer in 0..{MAX_CLASSES - 1})"
        )
    return value


def _meta_columns(metas: list[dict], url: str) -> dict[str, Any]:
    """The read columns (`records.READ_TYPES`) of the records' JSON objects, each typed as its
    column says: labels are class ids, mixed labels of one length."""
    try:
        values = {name: [m[name] for m in metas] for name in READ_TYPES}
        if len({len(labels) for labels in values["mixed_label"]}) != 1:
            raise CorpusError(f"{url}: mixed_label lengths differ between samples")
        values["label"] = [_class_id(label, url) for label in values["label"]]
        return {
            name: [str(v) for v in values[name]] if kind == "str" else np.array(values[name], kind)
            for name, kind in READ_TYPES.items()
        }
    except (KeyError, ValueError, TypeError, OverflowError) as err:
        raise CorpusError(f"{url}: corrupt sample metadata: {err!r}") from None


def _metas(raw: Buffer, starts: np.ndarray, sizes: np.ndarray, first: int, url: str) -> list[dict]:
    """The JSON objects of one chunk's records, parsed as one array by orjson (faster
    than the standard library's parse; one call instead of one per record); a member that is not
    exactly one object is found and named (`first`: the chunk's first record)."""
    array = _json_array(raw, starts, sizes)
    if array is None:
        members = zip(starts.tolist(), sizes.tolist(), strict=True)
        array = b"[" + b",".join([raw[s : s + n] for s, n in members]) + b"]"
    try:
        metas = orjson.loads(array)
        if len(metas) == len(starts) and all(isinstance(m, dict) for m in metas):
            return metas
    except ValueError:
        pass
    _name_corrupt(raw, starts, sizes, first, url)


def _name_corrupt(
    raw: Buffer, starts: np.ndarray, sizes: np.ndarray, first: int, url: str
) -> NoReturn:
    """Raise a CorpusError naming the first member that is not one JSON object."""
    for index, (start, size) in enumerate(zip(starts.tolist(), sizes.tolist(), strict=True), first):
        try:
            if not isinstance(orjson.loads(bytes(raw[start : start + size])), dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            raise CorpusError(f"{url}: corrupt sample {index}: {err}") from None
    raise CorpusError(f"{url}: corrupt sample metadata")


def _json_array(raw: Buffer, starts: np.ndarray, sizes: np.ndarray) -> bytes | None:
    """The JSON members as one JSON array, gathered with one index (each member padded with
    spaces to the longest, then a comma) instead of a Python slice per member; None unless
    they start on blocks and are short."""
    width = int(sizes.max()) + 1  # and the comma
    if width > MAX_JSON_GATHER or not _on_blocks(raw, starts):
        return None
    rows = _block_rows(raw, starts, width)  # a copy: the padding is written in place
    rows[np.arange(width) >= sizes[:, None]] = ord(" ")
    rows[:, -1] = ord(",")
    return b"[" + rows.tobytes()[:-1] + b"]"


@dataclass(frozen=True)
class _NpyColumn:
    """What every .npy member of one genome column shares: its header bytes and layout."""

    header: np.ndarray
    size: int
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool


def _npy_column(raw: Buffer, starts: np.ndarray, sizes: np.ndarray, url: str) -> _NpyColumn:
    """The first member's npy header, parsed and checked once; every member has its size."""
    head, dtype, shape, fortran = _npy_member(raw, int(starts[0]), int(sizes[0]), url)
    if (sizes != sizes[0]).any():
        raise CorpusError(f"{url}: npy members of one column differ in size")
    header = np.frombuffer(bytes(raw[int(starts[0]) : int(starts[0]) + head]), np.uint8)
    return _NpyColumn(header, int(sizes[0]), dtype, shape, fortran)


def _gather(raw: Buffer, starts: np.ndarray, column: _NpyColumn, url: str) -> np.ndarray:
    """The members at `starts`, copied out with one index and read as [R, ...]; each one's
    header must equal the column's."""
    rows = _member_bytes(raw, starts, column.size)
    head, shape = len(column.header), column.shape
    if (rows[:, :head] != column.header).any():
        raise CorpusError(f"{url}: npy members of one column have different headers")
    data = rows[:, head:].view(column.dtype)  # strided rows: float32_tensor copies them once
    data = data.reshape(len(starts), *(shape[::-1] if column.fortran else shape))
    data = data.transpose(0, *range(len(shape), 0, -1)) if column.fortran else data
    return np.require(data, requirements="AW")  # torch takes aligned, writable memory


def _member_bytes(raw: Buffer, starts: np.ndarray, size: int) -> np.ndarray:
    """[R, size] bytes of equal-size members: whole tar blocks with one index where every
    member starts on a block (a shard read directly), else slices joined."""
    if _on_blocks(raw, starts):
        return _block_rows(raw, starts, size)
    joined = b"".join([raw[s : s + size] for s in starts.tolist()])
    return np.frombuffer(joined, np.uint8).reshape(len(starts), size)


def _on_blocks(raw: Buffer, starts: np.ndarray) -> bool:
    return len(raw) % BLOCK == 0 and not (starts % BLOCK).any()


def _block_rows(raw: Buffer, starts: np.ndarray, width: int) -> np.ndarray:
    """[R, width] bytes from each block-aligned start, as whole blocks (one index); rows
    that would run past the shard's end repeat its last block (callers mask those bytes)."""
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, BLOCK)
    span = -(-width // BLOCK)
    index = np.minimum((starts // BLOCK)[:, None] + np.arange(span), len(blocks) - 1)
    return np.take(blocks, index, axis=0).reshape(len(starts), span * BLOCK)[:, :width]


def _npy_member(raw: Buffer, start: int, size: int, url: str):
    """(header length, dtype, shape, fortran) of the .npy member at `start`, checked before any
    memory is reserved: a known numeric dtype (never object, so never pickle) and a shape whose
    size matches the bytes present."""
    head = _npy_header_length(raw, start, url)
    dtype, shape, fortran = _npy_layout(raw[start : start + head], url)
    if math.prod(shape) * dtype.itemsize != size - head:
        raise CorpusError(f"{url}: npy header says shape {shape} but {size - head} bytes follow")
    return head, dtype, shape, fortran


def _npy_header_length(raw: Buffer, start: int, url: str) -> int:
    if raw[start : start + 6] != b"\x93NUMPY" or len(raw) < start + 12:
        raise CorpusError(f"{url}: an .npy member without the npy magic")
    width = 2 if raw[start + 6] == 1 else 4
    return 8 + width + int.from_bytes(raw[start + 8 : start + 8 + width], "little")


def _npy_layout(header: bytes, url: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    try:
        stream = io.BytesIO(header)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, SyntaxError, tokenize.TokenError) as err:  # numpy tokenizes the header
        raise CorpusError(f"{url}: bad npy header: {err}") from None
    if dtype.str not in NPY_DTYPES:
        raise CorpusError(f"{url}: npy dtype {dtype.str} is not one of {NPY_DTYPES}")
    return dtype, tuple(shape), fortran


def rebatch(chunks: Iterator[dict[str, Any]], batch_size: int) -> Iterator[dict[str, Any]]:
    """Column chunks -> batches of `batch_size` records across chunk and shard boundaries (the
    last one partial), as torch: float32 genomes and mixed labels, strings as lists. Only a
    batch that spans two chunks is joined; the others are slices of their chunk."""
    pending: dict[str, Any] | None = None  # a batch's head, continued by the next chunk
    for columns in chunks:
        if not columns:
            continue
        if pending is not None:
            head, columns = _split(columns, batch_size - len(pending["key"]))
            pending = _join([pending, head])
            if len(pending["key"]) < batch_size:
                continue
            yield _as_torch(pending)
        while len(columns["key"]) >= batch_size:
            head, columns = _split(columns, batch_size)
            yield _as_torch(head)
        pending = columns if len(columns["key"]) else None
    if pending is not None:
        yield _as_torch(pending)


def _split(columns: dict[str, Any], n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return {k: v[:n] for k, v in columns.items()}, {k: v[n:] for k, v in columns.items()}


# torch runs an elementwise op on the calling thread when it has at most this many elements
# (at::internal::GRAIN_SIZE); larger ones go to its thread pool, whose threads wait for cores
# when another process (a build) is busy, so the conversion waited longer than the read took
# (README: `afg bench-loader --beside-build`).
SERIAL_ELEMENTS = 32768


def float32_tensor(column: np.ndarray) -> torch.Tensor:
    """A float32 tensor of its own, converted by torch on the calling thread, in chunks of
    SERIAL_ELEMENTS (torch's float16 conversion beats numpy's even so). A read-only column
    (Arrow's buffers) is copied first, since torch.from_numpy takes writable memory only."""
    writable = column if column.flags.writeable else np.array(column)
    source = torch.from_numpy(writable).reshape(-1)
    out = torch.empty(column.shape, dtype=torch.float32)
    flat = out.view(-1)
    for start in range(0, flat.numel(), SERIAL_ELEMENTS):
        flat[start : start + SERIAL_ELEMENTS] = source[start : start + SERIAL_ELEMENTS]
    return out


def _as_torch(columns: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, column in columns.items():
        if isinstance(column, list):
            out[name] = column
        elif name.startswith("genome_"):
            out[name] = float32_tensor(column)
        else:  # a copy as well: a tensor over a slice would keep its whole chunk alive
            out[name] = torch.from_numpy(np.array(column))
    return out
