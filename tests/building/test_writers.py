import hashlib
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from afg_datasets.formats import FORMATS
from afg_datasets.formats.parquet import ParquetWriter
from afg_datasets.formats.webdataset import TarWriter
from afg_datasets.records import RecordBatch, record_features

FEATURES = record_features(["zero", "one"], {})


def batch(start, n, attack="clean"):
    rng = np.random.default_rng(start)
    return RecordBatch(
        [f"s{i}" for i in range(start, start + n)],
        attack,
        "{}",
        rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
        np.arange(n) % 2,
        np.arange(n) % 2,
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
        {},
    )


def test_parquet_final_name_only_after_close(tmp_path):
    path = tmp_path / "data" / "train-00000-of-00002.parquet"
    writer = ParquetWriter(path, FEATURES)
    writer.write(batch(0, 3))
    assert not path.exists(), "no final name before close"
    writer.write(batch(3, 6))
    shard = writer.close()
    assert shard.path == path and shard.rows == 9
    keys = pq.read_table(path).column("key").to_pylist()
    assert keys == [f"s{i}-clean" for i in range(9)]
    assert not list(path.parent.glob("*.partial"))


@pytest.mark.parametrize("writer_class", [ParquetWriter, TarWriter])
def test_an_exception_inside_the_writer_leaves_nothing(tmp_path, writer_class):
    with pytest.raises(RuntimeError), writer_class(tmp_path / "train.shard", FEATURES) as writer:
        writer.write(batch(0, 5))
        raise RuntimeError("the task failed")
    assert not list(tmp_path.iterdir())


def write_wds(directory):
    writer = TarWriter(directory / "test-00000.tar", FEATURES)
    writer.write(batch(0, 3))
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
    names = ["s0-clean.json", "s0-clean.png", "s1-clean.json", "s1-clean.png"]
    assert [m.name for m in members][:4] == names
    assert {m.mtime for m in members} == {0}
    assert FORMATS["webdataset"].rows(first.path) == 3


def test_every_format_names_its_shards_and_counts_its_rows(tmp_path):
    """The format contract: shard paths inside its folder, `owns` them, rows read back."""
    for fmt in FORMATS.values():
        path = fmt.shard_path(tmp_path, "fgsm", "test", 1, 3)
        relative = path.relative_to(tmp_path).as_posix()
        assert fmt.owns(relative) and relative.startswith(f"{fmt.folder}/")
        assert path.name == f"test-00001-of-00003{fmt.suffix}"
        assert [f for f in FORMATS.values() if f.owns(relative)] == [fmt]
        with fmt.writer(path, FEATURES) as writer:
            writer.write(batch(0, 4, "fgsm"))
            writer.close()
        assert fmt.rows(path) == 4
