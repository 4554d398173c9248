"""Corpus format 1.0: the version every reader checks, the spec, croissant.json, viewer-ready
parquet and a push that resumes."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

import afg_datasets
from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import verify_corpus
from afg_datasets.corpus.manifest import load_manifest
from afg_datasets.errors import CorpusError
from afg_datasets.formats import parquet
from afg_datasets.layout import FORMAT_VERSION, MANIFEST_FILE, PLAN_FILE
from afg_datasets.records import RecordBatch, record_features
from tests.samples import REPO, TEST_DATA, run_cli

FORMAT_ZERO = TEST_DATA / "corpus-0.2"  # built by afg-datasets 0.2


def _set_version(root: Path, version: str | None) -> None:
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    if version is None:
        manifest.pop("format_version")
    else:
        manifest["format_version"] = version
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_build_records_its_format_everywhere(corpus):
    for name in (MANIFEST_FILE, PLAN_FILE):
        assert json.loads((corpus.out / name).read_text())["format_version"] == FORMAT_VERSION
    assert f"corpus format **{FORMAT_VERSION}**" in (corpus.out / "README.md").read_text()


def test_a_future_major_format_is_one_line_and_exit_2_for_every_reader(copy):
    _set_version(copy, "2.0")
    result = run_cli("verify", str(copy))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "format 2.0" in result.stderr and f"format {FORMAT_VERSION}" in result.stderr
    readers = [
        lambda: afg_datasets.load(copy, split="test"),
        lambda: afg_datasets.dataloader(copy, split="test", batch_size=4),
        lambda: next(iter(afg_datasets.stream(copy, split="test"))),
    ]
    for read in readers:
        with pytest.raises(CorpusError, match="format 2.0"):
            read()


@pytest.mark.parametrize("version", ["1", "x.y", "1.0.0", 1.0, "01.0"])
def test_a_malformed_format_version_is_refused(copy, version):
    _set_version(copy, version)
    with pytest.raises(CorpusError, match="format_version"):
        load_manifest(copy)


def test_a_newer_minor_format_reads_with_a_warning(copy, caplog):
    _set_version(copy, f"{FORMAT_VERSION.split('.')[0]}.9")
    with caplog.at_level(logging.WARNING):
        manifest = load_manifest(copy)
    assert manifest["format_version"].endswith(".9")
    assert "newer than this afg-datasets" in caplog.text


def test_a_format_0_corpus_from_afg_datasets_0_2_still_reads(tmp_path, caplog):
    root = tmp_path / "old"
    shutil.copytree(FORMAT_ZERO, root)
    with caplog.at_level(logging.WARNING):
        assert verify_corpus(root) == []
    assert "corpus format 0" in caplog.text and "rebuild" in caplog.text
    records = afg_datasets.load(root, split="train")
    assert (
        len(records) == json.loads((root / MANIFEST_FILE).read_text())["splits"]["train"]["records"]
    )
    batch = next(iter(afg_datasets.dataloader(root, split="train", batch_size=4)))
    assert batch["genome_spatial"].shape[0] == 4
    assert run_cli("verify", str(root)).returncode == 0


def test_a_format_0_build_in_progress_is_not_finished_or_resumed(tmp_path):
    out = tmp_path / "old"
    shutil.copytree(FORMAT_ZERO, out)
    (out / MANIFEST_FILE).unlink()  # a 0.2 build that has not finished
    result = run_cli("finalize", str(out))
    assert result.returncode == 2
    assert "corpus format 0" in result.stderr and "rebuild" in result.stderr


def _spec_names() -> set[str]:
    text = (REPO / "docs" / "format.md").read_text()
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", text))


def test_the_spec_names_every_manifest_field_and_record_field(corpus):
    named = _spec_names()
    manifest = json.loads((corpus.out / MANIFEST_FILE).read_text())
    fields = set(manifest) | {f"files.{k}" for k in manifest["files"][0]}
    fields |= {f"model.{k}" for k in manifest["model"]}
    fields |= {f"source.{k}" for k in manifest["source"]}
    fields |= {f"seeds.{k}" for k in manifest["seeds"]}
    fields |= {f"layers.{k}" for k in manifest["layers"][0]}
    fields |= set(manifest["features"]["columns"])
    missing = sorted(f for f in fields if f not in named)
    assert not missing, f"docs/format.md does not name {missing}"


# mlcroissant reads parquet through pandas, which cannot convert the `datasets` array extension
# types once `datasets` has registered them: it runs in a process of its own, as a user's would.
CROISSANT_READ = """
import json, sys
import numpy as np
import mlcroissant as mlc
dataset = mlc.Dataset(jsonld=sys.argv[1])
out = {}
for r in dataset.records(record_set="all"):
    out[r["all/key"].decode()] = {
        "split": r["all/split"].decode(), "label": r["all/label"],
        "attack": r["all/attack"].decode(),
        "is_adversarial": bool(r["all/is_adversarial"]), "mixed_label": list(r["all/mixed_label"]),
        "genome_spatial": np.asarray(r["all/genome_spatial"], dtype=np.float32).tolist(),
        "image": np.asarray(r["all/image"]).tolist(),
    }
json.dump(out, open(sys.argv[2], "w"))
"""


def test_croissant_validates_and_reads_the_records_load_dataset_reads(corpus, tmp_path):
    from datasets import load_dataset

    dump = tmp_path / "records.json"
    command = [sys.executable, "-c", CROISSANT_READ, str(corpus.out / "croissant.json"), dump]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(dump.read_text())
    loaded = load_dataset(str(corpus.out), "all")
    assert len(records) == sum(len(split) for split in loaded.values())
    for split, rows in loaded.items():
        for row in rows:
            record = records[row["key"]]
            assert record["split"] == split and record["label"] == row["label"]
            assert record["attack"] == row["attack"]
            assert record["is_adversarial"] == row["is_adversarial"]
            assert record["mixed_label"] == list(row["mixed_label"])
            assert np.array_equal(
                np.asarray(record["genome_spatial"], dtype=np.float32),
                np.asarray(row["genome_spatial"], dtype=np.float32),
            )
            assert np.array_equal(np.asarray(record["image"]), np.asarray(row["image"]))


def test_card_croissant_and_manifest_agree_on_every_file(corpus):
    manifest = json.loads((corpus.out / MANIFEST_FILE).read_text())
    croissant = json.loads((corpus.out / "croissant.json").read_text())
    objects = {
        d["@id"]: (d["sha256"], d["contentSize"], d["contentUrl"])
        for d in croissant["distribution"]
        if d["@type"] == "cr:FileObject"
    }
    card = (corpus.out / "README.md").read_text()
    assert set(objects) == {e["path"] for e in manifest["files"]}
    for entry in manifest["files"]:
        assert objects[entry["path"]] == (entry["sha256"], f"{entry['bytes']} B", entry["path"])
        assert f"| `{entry['path']}` | {entry['bytes']} | `{entry['sha256']}` |" in card
    for key in ("rai:dataCollection", "rai:dataLimitations", "rai:dataBiases"):
        assert croissant[key]
    assert "fgsm" in croissant["rai:dataCollection"]


def test_a_croissant_that_disagrees_with_the_manifest_fails_verify(copy):
    croissant = json.loads((copy / "croissant.json").read_text())
    objects = [d for d in croissant["distribution"] if d["@type"] == "cr:FileObject"]
    objects[0]["sha256"] = "0" * 64
    (copy / "croissant.json").write_text(json.dumps(croissant))
    assert any("croissant.json" in p for p in verify_corpus(copy))
    result = run_cli("push", str(copy), "--repo-id", "a/b", "--dry-run")
    assert result.returncode == 2 and "croissant.json" in result.stderr
    (copy / "croissant.json").unlink()
    assert "croissant.json: missing" in verify_corpus(copy)


def _png(rng, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "png")
    return buffer.getvalue()


# digits-sized and ImageNet-shaped records (enough small ones that column headers do not count)
@pytest.mark.parametrize(("size", "n"), [(8, 400), (224, 24)])
def test_parquet_row_groups_are_bounded_in_bytes_and_have_a_page_index(
    tmp_path, monkeypatch, size, n
):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    features = record_features(["a", "b"], {})
    zeros = np.zeros(n, np.float32)
    labels = np.arange(n) % 2
    ids = [f"s{i}" for i in range(n)]
    records = RecordBatch(ids, "clean", "{}", images, labels, labels, zeros, zeros, {})
    table = parquet.to_arrow(records, features)
    bound = table.nbytes // 5  # a batch five times the bound
    monkeypatch.setattr(parquet.rows_per_group, "__defaults__", (bound,))
    writer = parquet.ParquetWriter(tmp_path / "x.parquet", features)
    writer.write(records)
    metadata = pq.ParquetFile(writer.close().path).metadata
    assert metadata.num_rows == n and metadata.num_row_groups >= 5
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        stored = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        assert stored <= bound and group.total_byte_size <= bound
        assert all(group.column(c).has_offset_index for c in range(group.num_columns))
    assert pq.read_table(tmp_path / "x.parquet").equals(table)


def test_a_built_shard_has_a_page_index_and_one_row_group_per_batch(corpus):
    shard = next((corpus.out / "data" / "clean").glob("train-*.parquet"))
    metadata = pq.ParquetFile(shard).metadata
    assert metadata.row_group(0).column(0).has_offset_index
    assert metadata.row_group(0).num_rows <= corpus.manifest["config"]["batch_size"]


def test_a_format_0_corpus_is_rebuilt_in_place_only_with_overwrite(tmp_path):
    out = tmp_path / "old"
    shutil.copytree(FORMAT_ZERO, out)
    config = tmp_path / "same.yaml"
    old = BuildConfig.from_manifest(json.loads((out / PLAN_FILE).read_text())["config"])
    config.write_text(yaml.safe_dump(old.to_dict()))
    refused = run_cli("build-shards", str(config), "--out", str(out), "--attacks", "fgsm")
    assert (
        refused.returncode == 2 and "format 0" in refused.stderr and "--overwrite" in refused.stderr
    )
    assert "format_version" not in (out / MANIFEST_FILE).read_text()  # untouched
    rebuilt = run_cli(
        "build-shards", str(config), "--out", str(out), "--attacks", "fgsm", "--overwrite"
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((out / MANIFEST_FILE).read_text())["format_version"] == FORMAT_VERSION


def test_croissant_describes_the_genome_its_encoder_makes(corpus):
    """The description is the encoder's own summary (`cards/genome/<name>.md`): an
    `activations` corpus is not described as NMF neuron groups."""
    from afg_datasets.corpus.facts import CorpusFacts
    from afg_datasets.publish.croissant import describe

    manifest = json.loads((corpus.out / MANIFEST_FILE).read_text())
    assert "group" in describe(CorpusFacts.parse(manifest))["description"]  # groupmap: NMF
    manifest["config"]["genome"] = {"encoder": "activations", "size": 8}
    described = describe(CorpusFacts.parse(manifest))["description"]
    assert "activations, average-pooled, without factorization" in described
    assert "NMF" not in described and "\n" not in described


@pytest.mark.parametrize("name", ["../afg_dataset_card", "../../recognizer", "nosuch", "", "a/b"])
def test_an_encoder_name_from_a_manifest_is_never_a_path(corpus, name):
    """A stranger's manifest names the encoder; only a registered name picks a card file
    (`../afg_dataset_card` made the card and croissant render another template and raise)."""
    from afg_datasets.corpus.facts import CorpusFacts
    from afg_datasets.genome import ENCODERS
    from afg_datasets.publish.croissant import describe

    manifest = json.loads((corpus.out / MANIFEST_FILE).read_text())
    manifest["config"]["genome"] = {"encoder": name, "size": 8}
    assert name not in ENCODERS and "activations" in ENCODERS
    assert f"the `{name}` encoder" in describe(CorpusFacts.parse(manifest))["description"]
