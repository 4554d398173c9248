import hashlib
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from afg_datasets.writers import ParquetShardWriter, WebDatasetShardWriter

SCHEMA = pa.schema([("key", pa.string()), ("x", pa.int64())])


def table(start, n):
    return pa.table(
        {"key": [f"k{i}" for i in range(start, start + n)], "x": list(range(start, start + n))},
        schema=SCHEMA,
    )


def test_parquet_final_name_only_after_close(tmp_path):
    path = tmp_path / "data" / "train-00000-of-00002.parquet"
    writer = ParquetShardWriter(path, SCHEMA)
    writer.write(table(0, 3))
    assert not path.exists(), "no final name before close"
    writer.write(table(3, 6))
    shard = writer.close()
    assert shard.path == path and shard.rows == 9
    assert pq.read_table(path).column("x").to_pylist() == list(range(9))
    assert not list(path.parent.glob("*.partial"))


def test_abort_leaves_nothing(tmp_path):
    writer = ParquetShardWriter(tmp_path / "train.parquet", SCHEMA)
    writer.write(table(0, 5))
    writer.abort()
    assert not list(tmp_path.iterdir())


def write_wds(directory):
    writer = WebDatasetShardWriter(directory / "test-00000.tar")
    writer.write([{"__key__": f"k{i}", "json": b"{}", "png": b"x" * i} for i in range(3)])
    return writer.close()


def test_webdataset_shards_are_deterministic_tars(tmp_path):
    first = write_wds(tmp_path / "a")
    second = write_wds(tmp_path / "b")
    assert first.rows == 3
    assert (
        hashlib.sha256(first.path.read_bytes()).digest()
        == hashlib.sha256(second.path.read_bytes()).digest()
    )
    with tarfile.open(first.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members][:4] == ["k0.json", "k0.png", "k1.json", "k1.png"]
    assert {m.mtime for m in members} == {0}


def test_webdataset_refuses_non_bytes(tmp_path):
    writer = WebDatasetShardWriter(tmp_path / "train-00000.tar")
    with pytest.raises(ValueError):
        writer.write([{"__key__": "k", "json": {"not": "bytes"}}])
    writer.abort()
    assert not list(tmp_path.iterdir())
