"""The read side stands alone: what it imports, and the one float32 conversion."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.shardcolumns import SERIAL_ELEMENTS, float32_tensor


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_verify_manifest_and_hub_import_neither_torch_nor_advertorch():
    loaded = imported_after(
        "import afg_datasets.corpus.verify, afg_datasets.corpus.manifest, afg_datasets.publish.hub"
    )
    assert "afg_datasets.corpus.verify" in loaded
    assert not {"torch", "advertorch"} & loaded


def test_the_loader_imports_no_build_code():
    loaded = imported_after("import afg_datasets.corpus.loader")
    assert "afg_datasets.corpus.loader" in loaded
    assert "advertorch" not in loaded
    assert not [m for m in loaded if m.startswith(("afg_datasets.models", "afg_datasets.sources"))]
    assert not [m for m in loaded if m.startswith(("afg_datasets.building", "afg_datasets.genome"))]


def test_the_recognizer_data_reader_imports_no_training_source_attack_or_build_code():
    loaded = imported_after("import afg_datasets.recognizer.data")
    ours = [m for m in loaded if m.startswith("afg_datasets")]
    heavy = ("training", "sources", "attacks", "building", "config", "genome")
    assert "afg_datasets.recognizer.data" in loaded
    assert not [m for m in ours if any(part in m.split(".") for part in heavy)], ours


@pytest.mark.parametrize("shape", [(3, 5), (256, 1536), (SERIAL_ELEMENTS + 7,), (40, 8, 8, 4)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8])
def test_float32_tensor_is_an_exact_conversion_of_its_own(shape, dtype):
    column = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    column.flags.writeable = False  # as Arrow hands columns out
    tensor = float32_tensor(column)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == shape
    assert np.array_equal(tensor.numpy(), column.astype(np.float32))
    writable = column.copy()
    float32_tensor(writable).fill_(-1)
    assert np.array_equal(writable, column), "the tensor must not share the column's memory"


def test_find_record_reads_one_record_by_key(corpus):
    from afg_datasets.evaluation.show import RecordNotFound, find_record

    key = _keys(corpus.out)[-1]
    record = find_record(Corpus.open(corpus.out), key)
    assert record["key"] == key and record["image"]["bytes"].startswith(b"\x89PNG")
    with pytest.raises(RecordNotFound, match="no record with key 'nope-clean'"):
        find_record(Corpus.open(corpus.out), "nope-clean")


def _keys(root):
    import pyarrow.parquet as pq

    shard = sorted((root / "data" / "fgsm").glob("test-*.parquet"))[0]
    return pq.read_table(shard, columns=["key"]).column("key").to_pylist()
