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


def test_parquet_rotation_final_names_and_rows(tmp_path):
    writer = ParquetShardWriter(tmp_path, "train", SCHEMA, rows_per_shard=4)
    writer.write(table(0, 3))
    assert not list(tmp_path.glob("*.parquet")), "no final name before close"
    writer.write(table(3, 6))
    files = writer.close()
    assert [f.path.name for f in files] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [f.rows for f in files] == [4, 4, 1]
    assert pq.read_table(files[0].path).column("x").to_pylist() == [0, 1, 2, 3]
    assert not list(tmp_path.glob("*.partial"))


def test_abort_leaves_nothing(tmp_path):
    writer = ParquetShardWriter(tmp_path, "train", SCHEMA, rows_per_shard=2)
    writer.write(table(0, 5))
    writer.abort()
    assert not list(tmp_path.iterdir())


def write_wds(directory):
    writer = WebDatasetShardWriter(directory, "test", rows_per_shard=2)
    writer.write([{"__key__": f"k{i}", "json": b"{}", "png": b"x" * i} for i in range(3)])
    return writer.close()


def test_webdataset_shards_are_deterministic_tars(tmp_path):
    first = write_wds(tmp_path / "a")
    second = write_wds(tmp_path / "b")
    assert [f.path.name for f in first] == ["test-00000.tar", "test-00001.tar"]
    digest = [hashlib.sha256(f.path.read_bytes()).hexdigest() for f in first]
    assert digest == [hashlib.sha256(f.path.read_bytes()).hexdigest() for f in second]
    with tarfile.open(first[0].path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["k0.json", "k0.png", "k1.json", "k1.png"]
    assert {m.mtime for m in members} == {0}


def test_webdataset_refuses_non_bytes(tmp_path):
    writer = WebDatasetShardWriter(tmp_path, "train", rows_per_shard=2)
    with pytest.raises(ValueError):
        writer.write([{"__key__": "k", "json": {"not": "bytes"}}])
    writer.abort()
