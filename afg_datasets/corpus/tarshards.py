"""Where the records of a webdataset shard lie: one read of the shard, its ustar headers
found and checked together, its member names matched at once.

Python's tarfile works record by record in Python; a stream reader must approach Arrow's
columnar speed, so this parses the fixed ustar header fields itself (name, size, type, checksum,
verified in vectorized passes). Anything it does not recognize as a plain ustar member (pax
or GNU long names) falls back to tarfile. The safety rules are the same on both paths:
regular members with a record name only, no member over MAX_MEMBER_BYTES, byte counts that
match the header, a shard that ends with the end-of-archive blocks. `shardcolumns` turns the
layout into columns."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import re
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from afg_datasets.documents import open_regular
from afg_datasets.errors import CorpusError

BLOCK = 512
# GNU tar's `-b N` pads to N blocks; a tail of zeros longer than the largest record is not
# padding but a cut or zero-filled file.
MAX_BLOCKING = 256
DEFAULT_RECORD = 20 * BLOCK  # what tarfile writes, and GNU tar by default
RECORD_SIZES = tuple(n * BLOCK for n in range(1, MAX_BLOCKING + 1))
USTAR = b"ustar\0"  # the magic at byte 257 of a POSIX tar header
MAX_MEMBER_BYTES = 256 << 20  # a single tar member larger than this is not a record's
PLAIN_EXTENSION = re.compile(rb"[!-.0-~]*")  # printable ASCII without '/'
HEADER_CHUNK = 1024  # headers checked at once
MAX_MEMBERS_PER_RECORD = 64  # more, and the shard's names are parsed one by one
MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension rule
MEMBERS = re.compile(r"^((?:[^\n]*/|)[^./\n]+)\.([^/\n]*)$", re.M)  # the same, one per line
Buffer = bytes | memoryview  # a shard's bytes: read into a ShardBuffer, or fetched
# (records, {extension: (data offsets, sizes)}, one entry per record in order)
Layout = tuple[int, dict[str, tuple[np.ndarray, np.ndarray]]]


class _NotPlain(Exception):
    """A header this reader leaves to tarfile (pax / GNU extensions, ustar prefixes)."""


class ShardBuffer:
    """Memory that a stream's shards are read into, one after another: fresh memory for
    every shard (page faults on tens of MB) costs more than its parse. No column that
    `shardcolumns` returns is a view of it."""

    def __init__(self) -> None:
        self._memory = np.empty(0, np.uint8)

    def read(self, path: Path) -> memoryview:
        with open_regular(path, CorpusError) as handle:
            size = os.fstat(handle.fileno()).st_size
            if len(self._memory) < size:
                self._memory = np.empty(size, np.uint8)
            view = memoryview(self._memory)[:size]
            if handle.readinto(view) != size:
                raise CorpusError(f"{path}: the file changed while it was read")
        return view


@contextlib.contextmanager
def checked_bytes(url: str, expected_sha256: str | None, buffer: ShardBuffer) -> Iterator[Buffer]:
    """A shard's bytes (a local one read into `buffer`, which the caller reuses for the next
    shard) for the parse inside the `with` block. The sha256 (when given) is computed by a
    second thread meanwhile (hashlib releases the GIL; the parse is safe on hostile bytes);
    the block ends only once it matches, and a mismatch is reported as tampering whatever
    the parse raised."""
    raw = _read(url, expected_sha256, buffer)
    if expected_sha256 is None:
        yield raw
        return
    tampered = CorpusError(f"{url}: sha256 differs from the manifest (corrupt or tampered)")
    with ThreadPoolExecutor(1, thread_name_prefix="afg-sha256") as pool:  # waits for the hash
        digest = pool.submit(lambda: hashlib.sha256(raw).hexdigest())
        try:
            yield raw
        except Exception:  # whatever damaged bytes made the parse raise, tampering is the news
            if digest.result() != expected_sha256:
                raise tampered from None
            raise
        if digest.result() != expected_sha256:
            raise tampered


def shard_members(raw: Buffer, url: str) -> tuple[Buffer, Layout]:
    """Where a shard's records' members lie, every header checked (the bytes they lie in:
    `raw`, or for shards that tarfile reads, their payloads joined)."""
    try:
        return raw, _plain_members(raw, url)
    except _NotPlain:
        return _tarfile_members(raw, url)


def _read(url: str, expected_sha256: str | None, buffer: ShardBuffer) -> Buffer:
    """A local shard's bytes (read whole: the bytes parsed are the bytes hashed, and a memory
    map faulted in page by page costs more), else through webdataset's opener (http,
    pipe:, ...)."""
    if Path(url).is_file():
        return buffer.read(Path(url))
    if expected_sha256 is not None:
        raise CorpusError(f"{url}: listed in the manifest but missing")
    from webdataset import gopen

    with gopen(url, "rb") as handle:
        return handle.read()


def plain_member_names(raw: Buffer, url: str) -> list[str] | None:
    """Every member's name, in order, of a shard whose headers are plain ustar ones
    (`_plain_headers`: chained, checksummed, regular files, the end accounted for); None where
    tarfile must read it (other header kinds, a NUL inside a name)."""
    try:
        blocks, offsets, _ = _plain_headers(raw, url)
        fields = _checked_names(blocks, offsets // BLOCK, url)
    except _NotPlain:
        return None
    names = [name.decode("utf-8", "surrogateescape") for name in _fields(fields)]
    return None if any("\0" in name for name in names) else names


def _plain_headers(raw: Buffer, url: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blocks, header offsets, member sizes). Headers are found by their ustar magic and
    their chain (each member ends where the next header starts) checked in one vectorized
    pass; where the chain does not hold (a header without the magic, or member data that
    happens to look like one) the headers are walked one by one; the shard must end where its
    members do (`check_end`)."""
    end = len(raw)
    blocks = np.frombuffer(raw, np.uint8, count=end // BLOCK * BLOCK).reshape(-1, BLOCK)
    found = _chained_headers(blocks)
    offsets, sizes = found if found is not None else _walk(raw, url)
    if len(sizes) and (sizes.max() > MAX_MEMBER_BYTES or offsets[-1] + BLOCK + sizes[-1] > end):
        raise CorpusError(f"{url}: truncated shard or oversized member")
    stop = int(offsets[-1] + BLOCK + -(-sizes[-1] // BLOCK) * BLOCK) if len(sizes) else 0
    check_end(raw, stop, url)
    return blocks, offsets, sizes


def _plain_members(raw: Buffer, url: str) -> Layout:
    """Records as {ext: (data offset, size)}: the headers (`_plain_headers`) checked together
    (checksum, type, name)."""
    blocks, offsets, sizes = _plain_headers(raw, url)
    fields = _checked_names(blocks, offsets // BLOCK, url)
    layout = _periodic_layout(fields, offsets + BLOCK, sizes)
    if layout is not None:
        return layout
    names = b"\n".join(_fields(fields)).decode("utf-8", "replace")
    return _layout(names, len(offsets), offsets + BLOCK, sizes, url)


def _chained_headers(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(offsets, sizes) of the blocks that carry the ustar magic and 11 octal size digits, if
    they chain from block 0 to the end of the archive; else None."""
    candidates = np.flatnonzero(blocks[:, 257] == ord("u"))  # one byte first, then the rest
    candidates = candidates[(blocks[candidates, 257:263] == np.frombuffer(USTAR, np.uint8)).all(1)]
    if not len(candidates) or candidates[0] != 0:
        return None
    digits = blocks[candidates, 124:135].astype(np.int64) - ord("0")
    if ((digits < 0) | (digits > 7)).any():
        return None
    sizes = digits @ (8 ** np.arange(10, -1, -1, dtype=np.int64))
    following = candidates + 1 + -(-sizes // BLOCK)
    if (following[:-1] != candidates[1:]).any():
        return None
    last = int(following[-1])
    if last < len(blocks) and blocks[last].any():  # not the end-of-archive block
        return None
    return candidates * BLOCK, sizes


def check_end(raw: Buffer, stop: int, url: str) -> None:
    """The members end at `stop`; the shard must end right after: two zero blocks, padded
    with zeros at most to the next full record of some blocking factor up to MAX_BLOCKING
    (tar's `-b N`; Python's tarfile writes 20). More bytes (a zero-filled preallocated download,
    a header the parse did not reach) or fewer are a CorpusError: the records found account for
    every byte."""
    end, closed = len(raw), stop + 2 * BLOCK
    padded = any(-(-closed // size) * size == end for size in RECORD_SIZES)
    empty_but_long = stop == 0 and end > DEFAULT_RECORD  # a zero-filled file, not a shard
    if not padded or empty_but_long or bytes(raw[stop:]).strip(b"\0"):
        raise CorpusError(
            f"{url}: truncated, zero-filled or damaged shard: its members end at byte {stop}, "
            f"the end-of-archive blocks do not end it ({end} bytes)"
        )


def _octal_size(field: bytes) -> int:
    """A header's size field: octal digits, space- or NUL-padded (base-256 sizes and
    anything else go to tarfile)."""
    digits = field.strip(b" \0")
    if not digits or digits.strip(b"01234567"):
        raise _NotPlain
    return int(digits, 8)


def _walk(raw: Buffer, url: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, sizes) from header to header, reading only each size field."""
    offsets, sizes, offset, end = [], [], 0, len(raw)
    while raw[offset : offset + 1] not in (b"\0", b""):  # a zero block ends the archive
        size = _octal_size(bytes(raw[offset + 124 : offset + 136]))
        if size > MAX_MEMBER_BYTES or offset + BLOCK + size > end:
            raise CorpusError(f"{url}: truncated shard or oversized member at byte {offset}")
        offsets.append(offset)
        sizes.append(size)
        offset += BLOCK + -(-size // BLOCK) * BLOCK
    return np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64)


def _checked_names(blocks: np.ndarray, rows: np.ndarray, url: str) -> np.ndarray:
    """The [N, 100] name fields of the headers at `rows`, each header checked: a plain
    regular file without a name prefix (anything else goes to tarfile) and its ustar checksum
    (the header summed with its checksum field read as spaces). HEADER_CHUNK headers at a
    time: small copies reuse their memory and stay in cache."""
    names = np.empty((len(rows), 100), np.uint8)
    for first in range(0, len(rows), HEADER_CHUNK):
        headers = np.take(blocks, rows[first : first + HEADER_CHUNK], axis=0)  # np.take, not [rows]
        if ((headers[:, 156] != 0) & (headers[:, 156] != ord("0"))).any() or headers[:, 345].any():
            raise _NotPlain
        stored = _checksums(headers[:, 148:156], url)
        computed = headers.sum(1, dtype=np.uint32).astype(np.int64)  # uint32 sums are cheaper
        computed -= headers[:, 148:156].sum(1, dtype=np.int64)
        bad = np.flatnonzero(computed + 8 * ord(" ") != stored)
        if len(bad):
            at = int(rows[first + bad[0]]) * BLOCK
            raise CorpusError(f"{url}: bad tar header checksum at byte {at}")
        names[first : first + len(headers)] = headers[:, :100]
    return names


def _checksums(fields: np.ndarray, url: str) -> np.ndarray:
    """The stored checksums: six octal digits, NUL, space (as tar writes) read at once; other
    spellings one by one."""
    digits = fields[:, :6].astype(np.int64) - ord("0")
    if (
        ((digits >= 0) & (digits <= 7)).all()
        and (fields[:, 6] == 0).all()
        and (fields[:, 7] == 32).all()
    ):
        return digits @ (8 ** np.arange(5, -1, -1, dtype=np.int64))
    try:
        return np.array([int(f.strip(b" \0") or b"0", 8) for f in _fields(fields)])
    except ValueError:
        raise CorpusError(f"{url}: unreadable tar header checksum") from None


def _fields(columns: np.ndarray) -> list[bytes]:
    """Each row of a fixed-width header field as bytes, trailing NULs dropped."""
    return columns.copy().view(f"S{columns.shape[1]}").ravel().tolist()


def _layout(names: str, count: int, starts: np.ndarray, sizes: np.ndarray, url: str) -> Layout:
    """Consecutive members with one key form a record; every name must be a record file and
    every record must hold the same member kinds (a corpus is rectangular)."""
    pairs = MEMBERS.findall(names)
    if len(pairs) != count or "\0" in names:
        bad = next((n for n in names.split("\n") if not MEMBER.match(n) or "\0" in n), names)
        raise CorpusError(f"{url}: member {bad!r} is not a record file")
    keys = np.array([key for key, _ in pairs], dtype=object)
    record = np.r_[0, np.cumsum(keys[1:] != keys[:-1])] if count else np.zeros(0, np.int64)
    records = int(record[-1]) + 1 if count else 0
    exts = np.array([ext for _, ext in pairs], dtype=object)
    members = {}
    for ext in dict.fromkeys(exts.tolist()):
        chosen = exts == ext
        if not np.array_equal(record[chosen], np.arange(records)):
            raise CorpusError(f"{url}: every sample needs exactly one {ext!r} member")
        members[ext] = (starts[chosen], sizes[chosen])
    return records, members


def _periodic_layout(names: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> Layout | None:
    """The layout of a shard whose records all list the same members in the same order (what
    a corpus writer produces), checked with numpy's string operations on all name fields at
    once: each name is `<key>.<ext>` with the first record's extensions in turn, keys are
    printable ASCII without '.' or '/', neighbours differ. None where any of that fails;
    `_layout` then parses (or refuses) the names one by one. Accepts only what `_layout`
    accepts, with the same result, at ~1/5 of its cost."""
    flat = np.ascontiguousarray(names).view(f"S{names.shape[1]}").ravel()
    if not len(flat):
        return None
    head = flat[: MAX_MEMBERS_PER_RECORD + 1].tolist()
    prefix = head[0].split(b".", 1)[0] + b"."
    exts = [
        name[len(prefix) :] for name in itertools.takewhile(lambda n: n.startswith(prefix), head)
    ]
    width = len(exts)
    if (
        not 0 < width <= MAX_MEMBERS_PER_RECORD
        or len(flat) % width
        or len(set(exts)) != width
        or not all(PLAIN_EXTENSION.fullmatch(ext) for ext in exts)
    ):
        return None
    keys = np.char.partition(flat[::width], b".")[:, 0]
    chars = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), -1)
    if not chars.shape[1]:
        return None  # every key empty
    plain, nul = (chars > 32) & (chars < 127) & (chars != ord("/")), chars == 0
    if not (plain[:, 0].all() and (plain | nul).all() and not (nul[:, :-1] & plain[:, 1:]).any()):
        return None
    if (keys[1:] == keys[:-1]).any():
        return None
    for j, ext in enumerate(exts):
        if (flat[j::width] != np.char.add(keys, b"." + ext)).any():
            return None
    return len(keys), {
        ext.decode(): (starts[j::width], sizes[j::width]) for j, ext in enumerate(exts)
    }


def _tarfile_members(buf: Buffer, url: str) -> tuple[bytes, Layout]:
    """The general path: tarfile reads the members (their data joined into one buffer)."""
    names, starts, sizes, chunks, position = [], [], [], [], 0
    try:
        with tarfile.open(fileobj=io.BytesIO(buf), mode="r:") as tar:
            for member in tar:
                if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
                    raise CorpusError(f"{url}: member {member.name!r} is a sparse file")
                if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    raise CorpusError(f"{url}: member {member.name!r} is not a record file")
                handle = tar.extractfile(member)
                payload = handle.read() if handle else b""
                if len(payload) != member.size:
                    raise CorpusError(f"{url}: truncated shard")
                names.append(member.name)
                starts.append(position)
                sizes.append(member.size)
                chunks.append(payload)
                position += member.size
            stop = tar.offset  # tarfile stops quietly at a bad header: the end check sees it
    except tarfile.TarError as err:
        raise CorpusError(f"{url}: unreadable tar shard: {err}") from None
    check_end(buf, stop, url)
    layout = _layout("\n".join(names), len(names), np.array(starts), np.array(sizes), url)
    return b"".join(chunks), layout
