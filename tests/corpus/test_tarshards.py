"""The stream's fast paths (names checked at once, JSON members gathered as one array, one
buffer per pass) give exactly what the general paths give, and hand anything else to them."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afg_datasets.corpus import shardcolumns, tarshards
from afg_datasets.corpus.loader import stream
from afg_datasets.errors import CorpusError


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _meta(key: str, label: int) -> dict:
    return {"key": key, "attack": "clean", "label": label, "is_adversarial": False,
            "mixed_label": [1.0, 0.0, float(label)]}  # fmt: skip


def _shard(path, records: list[tuple[str, dict[str, bytes]]]) -> str:
    """A ustar shard of (key, {extension: payload}) in the order given."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in records:
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return str(path)


def _records(keys: list[str], dump=json.dumps) -> list[tuple[str, dict[str, bytes]]]:
    return [
        (key, {"g.npy": _npy(np.full((2, 3), i, np.float16)), "json": dump(_meta(key, i)).encode()})
        for i, key in enumerate(keys)
    ]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name
        assert np.asarray(a[name]).dtype == np.asarray(b[name]).dtype, name


@pytest.fixture()
def general(monkeypatch):
    """read_shard with both fast paths switched off."""

    def read(url):
        with monkeypatch.context() as patch:
            patch.setattr(tarshards, "_periodic_layout", lambda *args: None)
            patch.setattr(shardcolumns, "_json_array", lambda *args: None)
            return shardcolumns.read_shard(url, None)

    return read


def test_a_corpus_shard_reads_the_same_on_the_fast_and_the_general_paths(corpus, general):
    shard = str(sorted((corpus.out / "wds").glob("*/train-*.tar"))[0])
    with open(shard, "rb") as handle:
        raw = handle.read()
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, tarshards.BLOCK)
    offsets, sizes = tarshards._chained_headers(blocks)
    names = blocks[offsets // tarshards.BLOCK][:, :100]
    assert tarshards._periodic_layout(names, offsets + tarshards.BLOCK, sizes) is not None
    _assert_same(shardcolumns.read_shard(shard, None), general(shard))


def test_chunks_of_any_size_join_to_the_same_columns_and_batches(corpus, monkeypatch):
    shard = str(sorted((corpus.out / "wds").glob("*/train-*.tar"))[0])
    whole = shardcolumns.read_shard(shard, None)
    batches = list(stream(corpus.out, split="train", batch_size=9))
    monkeypatch.setattr(shardcolumns, "CHUNK", 7)  # records split across many chunks
    assert len(shardcolumns.shard_chunks(shard, None)) == -(-len(whole["key"]) // 7)
    _assert_same(shardcolumns.read_shard(shard, None), whole)
    for a, b in zip(batches, stream(corpus.out, split="train", batch_size=9), strict=True):
        _assert_same(a, b)


@pytest.mark.parametrize(
    "keys",
    [
        ["run.1/a", "run.1/b"],  # a dotted directory: webdataset keys may hold one
        ["a b", "c"],  # a space in a key
        ["x" * 90, "y"],  # names of different lengths, one near ustar's 100 bytes
    ],
)
def test_unusual_but_valid_names_read_as_the_general_parser_reads_them(tmp_path, general, keys):
    shard = _shard(tmp_path / "s.tar", _records(keys))
    columns = shardcolumns.read_shard(shard, None)
    assert columns["key"] == keys
    _assert_same(columns, general(shard))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: [r[0], (r[1][0], {"json": r[1][1]["json"]})],  # a record lost a member
        lambda r: [r[0], ("a", r[1][1])],  # two records with one key
    ],
)
def test_shards_that_break_the_pattern_are_refused_as_before(tmp_path, general, change):
    shard = _shard(tmp_path / "s.tar", change(_records(["a", "b"])))
    with pytest.raises(CorpusError, match="exactly one"):
        shardcolumns.read_shard(shard, None)
    with pytest.raises(CorpusError, match="exactly one"):
        general(shard)


def test_members_in_another_order_per_record_read_as_before(tmp_path, general):
    first, second = _records(["a", "b"])
    shard = _shard(tmp_path / "s.tar", [first, (second[0], dict(reversed(second[1].items())))])
    columns = shardcolumns.read_shard(shard, None)
    assert columns["key"] == ["a", "b"]
    _assert_same(columns, general(shard))


def test_metadata_in_any_json_spelling_reads_alike(tmp_path, general):
    compact = shardcolumns.read_shard(_shard(tmp_path / "c.tar", _records(["a", "b"])), None)
    pretty = _shard(tmp_path / "p.tar", _records(["a", "b"], lambda m: json.dumps(m, indent=2)))
    _assert_same(shardcolumns.read_shard(pretty, None), compact)  # newlines inside a member
    as_text = [(k, m | {"json": m["json"].replace(b'"label": 1', b'"label": "1"')})
               for k, m in _records(["a", "b"])]  # fmt: skip
    _assert_same(shardcolumns.read_shard(_shard(tmp_path / "t.tar", as_text), None), compact)
    missing = [(k, m | {"json": b'{"key": "%s"}' % k.encode()}) for k, m in _records(["a"])]
    with pytest.raises(CorpusError, match="corrupt sample metadata"):
        shardcolumns.read_shard(_shard(tmp_path / "m.tar", missing), None)
    ragged = [(k, m | {"json": m["json"].replace(b"[1.0, 0.0, 1.0]", b"[1.0]")})
              for k, m in _records(["a", "b"])]  # fmt: skip
    with pytest.raises(CorpusError, match="mixed_label lengths differ"):
        shardcolumns.read_shard(_shard(tmp_path / "r.tar", ragged), None)


def test_columns_outlive_the_buffer_their_shard_was_read_into(corpus, tmp_path):
    """The stream reads every shard of a pass into one buffer: no column may be a view of it.
    The chunks are checked as the stream gets them (not joined: joining copies)."""
    shard = str(max((corpus.out / "wds").rglob("*.tar"), key=lambda p: p.stat().st_size))
    buffer = tarshards.ShardBuffer()
    kept = shardcolumns.shard_chunks(shard, None, buffer)
    zeros = tmp_path / "zeros.tar"
    zeros.write_bytes(bytes(Path(shard).stat().st_size))
    buffer.read(zeros)  # the next shard overwrites every byte this one was read into
    fresh = shardcolumns.shard_chunks(shard, None)
    assert len(kept) == len(fresh) > 0
    for a, b in zip(kept, fresh, strict=True):
        _assert_same(a, b)


@pytest.mark.parametrize("at", ["header", "data"])
def test_a_tampered_shard_is_reported_as_tampered_whatever_the_parse_finds(corpus, tmp_path, at):
    """The sha256 runs beside the parse: a header broken on the way is still named a sha256
    mismatch, and a changed genome value (which parses) is refused as well."""
    root = tmp_path / "afg"
    shutil.copytree(corpus.out, root)
    shard = sorted((root / "wds").glob("*/test-*.tar"))[0]
    damaged = bytearray(shard.read_bytes())
    damaged[0 if at == "header" else 2 * tarshards.BLOCK + 200] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    with pytest.raises(CorpusError, match="sha256 differs"):
        list(stream(root, split="test"))
    if at == "header":  # what the parse alone finds
        with pytest.raises(CorpusError, match="checksum"):
            list(stream(root, split="test", verify=False))
    else:
        assert list(stream(root, split="test", verify=False))


@pytest.fixture(scope="module")
def shard_bytes(corpus) -> dict[str, bytes]:
    """A corpus shard as written (the fast path) and with pax headers (tarfile's path)."""
    shard = sorted((corpus.out / "wds").glob("*/test-*.tar"))[0]
    pax = io.BytesIO()
    with tarfile.open(shard) as source, tarfile.open(fileobj=pax, mode="w", format=2) as out:
        for member in source:
            member.pax_headers = {"comment": "pax"}
            out.addfile(member, source.extractfile(member))
    return {"plain": shard.read_bytes(), "pax": pax.getvalue()}


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(["plain", "pax"]),
    mode=st.sampled_from(["truncate", "flip", "zero"]),
)
def test_unhashed_damage_reads_or_is_one_corpus_error(
    shard_bytes, tmp_path_factory, data, kind, mode
):
    """Without a sha256 the parse alone meets the damage: any byte changed, a block zeroed or
    a cut gives the records or a CorpusError, never another exception."""
    damaged = bytearray(shard_bytes[kind])
    at = data.draw(st.integers(0, len(damaged) - 1), label="offset")
    if mode == "truncate":
        damaged = damaged[:at]
    elif mode == "flip":
        damaged[at] ^= data.draw(st.integers(1, 255), label="bits")
    else:
        damaged[at : at + tarshards.BLOCK] = bytes(len(damaged[at : at + tarshards.BLOCK]))
    path = tmp_path_factory.mktemp("damaged") / "shard.tar"
    path.write_bytes(bytes(damaged))
    try:
        columns = shardcolumns.read_shard(str(path), None)
    except CorpusError:
        return
    assert len(columns["key"]) == len(columns["label"]) == len(columns["genome_spatial"])
