"""Read a corpus's webdataset shards as columns: one pass over a memory-mapped shard, headers
validated, every genome column gathered with one numpy index per shard.

Python's tarfile and a per-member npy parse cost ~100 us per record; a stream reader must
approach Arrow's columnar speed, so this parses the fixed ustar header fields itself (name,
size, type, checksum, verified in one vectorized pass), caches each distinct npy header (a
rectangular corpus has one per genome column) and gathers the arrays by offset. Anything it
does not recognize as a plain ustar member (pax or GNU long names) falls back to tarfile.
The safety rules are the same on both paths: regular members with a record name only, no
member over MAX_MEMBER_BYTES, a known numeric npy dtype (never pickle), byte counts that match
the header, a shard that ends with the end-of-archive blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from afg_datasets.verify import CorpusError

BLOCK = 512
NPY_DTYPES = ("<f4", "<f2", "<f8", "|u1", "<i8")  # what a genome member may hold
MAX_MEMBER_BYTES = 256 << 20  # a single tar member larger than this is not a record's
MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension rule


class _NotPlain(Exception):
    """A header this reader leaves to tarfile (pax / GNU extensions, ustar prefixes)."""


def read_shard(url: str, expected_sha256: str | None) -> dict[str, Any]:
    """The records of one shard as columns: genome arrays [R, ...] in their stored dtype,
    `label` int64, `is_adversarial` bool, `mixed_label` float32, `attack` / `key` lists.
    The sha256 (when given) is checked on the same bytes before anything is parsed."""
    raw = _read(url, expected_sha256 is not None)  # one shard in memory at a time
    if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise CorpusError(f"{url}: sha256 differs from the manifest (corrupt or tampered)")
    try:
        records = _plain_members(raw, url)
    except _NotPlain:
        raw, records = _tarfile_members(raw, url)
    return _columns(raw, records, url)


def _read(url: str, listed: bool) -> bytes:
    """A local shard's bytes, else through webdataset's opener (http, pipe:, ...)."""
    if Path(url).is_file():
        return Path(url).read_bytes()
    if listed:
        raise CorpusError(f"{url}: listed in the manifest but missing")
    from webdataset import gopen

    with gopen(url, "rb") as handle:
        return handle.read()


def _plain_members(buf: bytes, url: str) -> list[dict[str, tuple[int, int]]]:
    """Records as {ext: (data offset, size)}, walking the ustar headers."""
    records: list[dict[str, tuple[int, int]]] = []
    offsets, stored, current = [], [], None
    offset, end = 0, len(buf)
    while True:
        if offset + 2 * BLOCK > end:
            raise CorpusError(f"{url}: truncated shard (no end-of-archive marker)")
        header = buf[offset : offset + BLOCK]
        if not header.strip(b"\0"):
            if buf[offset:].strip(b"\0") or end - offset < 2 * BLOCK:
                raise CorpusError(f"{url}: truncated shard or data after the end marker")
            break
        if header[156:157] not in (b"0", b"\0") or header[345:346] != b"\0":
            raise _NotPlain
        try:
            name = header[:100].split(b"\0", 1)[0].decode()
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            stored.append(int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8))
        except ValueError:
            raise CorpusError(f"{url}: unreadable tar header at byte {offset}") from None
        match = MEMBER.match(name)
        if not match or size > MAX_MEMBER_BYTES:
            raise CorpusError(f"{url}: member {name!r} is not a record file")
        if offset + BLOCK + size > end:
            raise CorpusError(f"{url}: truncated shard (member {name!r} cut short)")
        key, ext = match.groups()
        if current is None or current[0] != key:
            current = (key, {})
            records.append(current[1])
        current[1][ext] = (offset + BLOCK, size)
        offsets.append(offset)
        offset += BLOCK + -(-size // BLOCK) * BLOCK
    _check_checksums(np.frombuffer(buf, np.uint8), np.array(offsets), np.array(stored), url)
    return records


def _check_checksums(data: np.ndarray, offsets: np.ndarray, stored: np.ndarray, url: str):
    """ustar checksum: the header's bytes summed with the checksum field read as spaces."""
    if not len(offsets):
        return
    headers = data[offsets[:, None] + np.arange(BLOCK)].astype(np.int64)
    computed = headers.sum(1) - headers[:, 148:156].sum(1) + 8 * ord(" ")
    bad = np.flatnonzero(computed != stored)
    if len(bad):
        raise CorpusError(f"{url}: bad tar header checksum at byte {int(offsets[bad[0]])}")


def _tarfile_members(buf: bytes, url: str) -> tuple[bytes, list[dict[str, tuple[int, int]]]]:
    """The general path: tarfile reads the members (their data joined into one buffer)."""
    records: list[dict[str, tuple[int, int]]] = []
    chunks, position, current = [], 0, None
    try:
        with tarfile.open(fileobj=io.BytesIO(buf), mode="r:") as tar:
            for member in tar:
                match = MEMBER.match(member.name)
                if not member.isfile() or not match or member.size > MAX_MEMBER_BYTES:
                    raise CorpusError(f"{url}: member {member.name!r} is not a record file")
                key, ext = match.groups()
                handle = tar.extractfile(member)
                payload = handle.read() if handle else b""
                if len(payload) != member.size:
                    raise CorpusError(f"{url}: truncated shard")
                if current is None or current[0] != key:
                    current = (key, {})
                    records.append(current[1])
                current[1][ext] = (position, member.size)
                chunks.append(payload)
                position += member.size
    except tarfile.TarError as err:
        raise CorpusError(f"{url}: unreadable tar shard: {err}") from None
    if buf[-2 * BLOCK :].strip(b"\0"):
        raise CorpusError(f"{url}: truncated shard (no end-of-archive marker)")
    return b"".join(chunks), records


def _columns(raw: bytes, records: list[dict], url: str) -> dict[str, Any]:
    metas, genome_members = [], {}
    for index, record in enumerate(records):
        try:
            start, size = record["json"]
            metas.append(json.loads(raw[start : start + size]))
        except (KeyError, ValueError) as err:
            raise CorpusError(f"{url}: corrupt sample {index}: {err}") from None
        for ext, location in record.items():
            if ext.endswith(".npy"):
                genome_members.setdefault(ext[: -len(".npy")], []).append(location)
    if not genome_members or any(len(v) != len(records) for v in genome_members.values()):
        raise CorpusError(f"{url}: every sample needs the same .npy genome members")
    columns: dict[str, Any] = {n: _gather(raw, v, url) for n, v in genome_members.items()}
    try:
        columns["label"] = np.array([int(m["label"]) for m in metas], np.int64)
        columns["is_adversarial"] = np.array([bool(m["is_adversarial"]) for m in metas])
        columns["mixed_label"] = np.array([m["mixed_label"] for m in metas], np.float32)
        columns["attack"] = [str(m["attack"]) for m in metas]
        columns["key"] = [str(m["key"]) for m in metas]
    except (KeyError, ValueError, TypeError) as err:
        raise CorpusError(f"{url}: corrupt sample metadata: {err}") from None
    if columns["mixed_label"].ndim != 2:
        raise CorpusError(f"{url}: mixed_label lengths differ between samples")
    return columns


def _gather(raw: bytes, locations: list[tuple[int, int]], url: str) -> np.ndarray:
    """One genome column: every member's npy header must equal the first one's (parsed and
    checked once), then each array is a view of the bytes, stacked once."""
    data = np.frombuffer(raw, np.uint8)
    starts = np.array([s for s, _ in locations])
    sizes = np.array([n for _, n in locations])
    head, dtype, shape, fortran = _npy_member(raw, int(starts[0]), int(sizes[0]), url)
    if (sizes != sizes[0]).any():
        raise CorpusError(f"{url}: npy members of one column differ in size")
    headers = data[starts[:, None] + np.arange(head)]
    if (headers != headers[0]).any():
        raise CorpusError(f"{url}: npy members of one column have different headers")
    return np.stack([_array(raw, int(s) + head, dtype, shape, fortran) for s in starts])


def _array(raw: bytes, offset: int, dtype: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    array = np.frombuffer(raw, dtype, math.prod(shape), offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


def _npy_member(raw: bytes, start: int, size: int, url: str):
    """(header length, dtype, shape, fortran) of the .npy member at `start`, checked before any
    memory is reserved: a known numeric dtype (never object, so never pickle) and a shape whose
    size matches the bytes present."""
    head = _npy_header_length(raw, start, url)
    dtype, shape, fortran = _npy_layout(raw[start : start + head], url)
    if math.prod(shape) * dtype.itemsize != size - head:
        raise CorpusError(f"{url}: npy header says shape {shape} but {size - head} bytes follow")
    return head, dtype, shape, fortran


def _npy_header_length(raw: bytes, start: int, url: str) -> int:
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
    except ValueError as err:
        raise CorpusError(f"{url}: bad npy header: {err}") from None
    if dtype.str not in NPY_DTYPES:
        raise CorpusError(f"{url}: npy dtype {dtype.str} is not one of {NPY_DTYPES}")
    return dtype, tuple(shape), fortran


def rebatch(shards: Iterator[dict[str, Any]], batch_size: int) -> Iterator[dict[str, Any]]:
    """Shard columns -> batches of `batch_size` records across shard boundaries (the last one
    partial), as torch: float32 genomes and mixed labels, strings as lists."""
    import torch

    pending: dict[str, Any] | None = None
    for columns in shards:
        pending = columns if pending is None else _concat(pending, columns)
        while len(pending["key"]) >= batch_size:
            head, pending = _split(pending, batch_size)
            yield _as_torch(head, torch)
    if pending is not None and len(pending["key"]):
        yield _as_torch(pending, torch)


def _concat(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if set(a) != set(b):
        raise CorpusError(f"shards with different columns: {sorted(a)} vs {sorted(b)}")
    return {k: a[k] + b[k] if isinstance(a[k], list) else np.concatenate([a[k], b[k]]) for k in a}


def _split(columns: dict[str, Any], n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return {k: v[:n] for k, v in columns.items()}, {k: v[n:] for k, v in columns.items()}


def _as_torch(columns: dict[str, Any], torch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, column in columns.items():
        if isinstance(column, list):
            out[name] = column
        elif name.startswith("genome_"):
            out[name] = torch.from_numpy(np.ascontiguousarray(column, dtype=np.float32))
        else:
            out[name] = torch.from_numpy(np.ascontiguousarray(column))
    return out
