"""End to end: the real default pipeline on a few images, read back by the standard readers."""

import glob
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from datasets import load_dataset
from typer.testing import CliRunner

import afg_datasets
from afg_datasets.building import build_corpus
from afg_datasets.cli import app
from afg_datasets.errors import ConfigError, CorpusError, OutputDirError
from afg_datasets.images import decode_png
from afg_datasets.models import load_target_model

SPLITS = {"train", "validation", "test"}


@pytest.fixture(scope="module")
def loaded(corpus):
    return load_dataset(str(corpus.out))


def test_load_dataset_all_and_per_attack(corpus, loaded):
    assert set(loaded) == SPLITS
    rows = sum(len(loaded[s]) for s in SPLITS)
    assert rows == corpus.stats["records"] == 48 * 4
    pgd = load_dataset(str(corpus.out), "pgd", split="test")
    assert set(pgd["attack"]) == {"clean", "pgd"}
    assert len(pgd) == 2 * loaded["test"]["attack"].count("clean")


def test_documented_features(loaded, corpus):
    features = loaded["train"].features
    assert features["label"].names == [str(i) for i in range(10)]
    assert type(features["genome_spatial"]).__name__ == "Array4D"
    record = loaded["train"].with_format("numpy")[0]
    layers = len(corpus.manifest["layers"])
    assert record["genome_spatial"].shape == (layers, 4, 8, 8)
    assert record["genome_channels"].shape == (layers, 4, 64)
    assert "." not in record["key"] and record["key"] == record["key"].lower()


def test_split_invariant_and_unique_keys(loaded):
    split_of, keys = {}, []
    for split in SPLITS:
        for source_id, key in zip(loaded[split]["source_id"], loaded[split]["key"], strict=True):
            assert split_of.setdefault(source_id, split) == split
            keys.append(key)
    assert len(keys) == len(set(keys))


def test_labels_success_and_mixed_label(loaded):
    for row in loaded["test"]:
        mixed = np.array(row["mixed_label"])
        assert mixed[row["label"]] == 1 and mixed[row["pred"]] == 1
        assert mixed[-1] == int(row["is_adversarial"])
        assert mixed[:-1].sum() == (1 if row["label"] == row["pred"] else 2)
        if row["is_adversarial"]:
            assert row["success"] == (row["pred"] != row["label"])
            assert row["attack"] != "clean"
        else:
            assert row["success"] is None and row["linf"] == 0 and row["attack"] == "clean"


def test_linf_budget_holds_on_stored_images(loaded, corpus):
    eps = corpus.manifest["attacks"]["fgsm"]["eps"]
    fgsm = [r for r in loaded["train"] if r["attack"] == "fgsm"]
    assert fgsm and max(r["linf"] for r in fgsm) <= eps + 1e-6


def test_pred_is_the_models_prediction_on_the_stored_png(corpus):
    model = load_target_model(corpus.out)
    table = pq.read_table(glob.glob(f"{corpus.out}/data/pgd/test-*.parquet")[0])
    images = np.stack([decode_png(i["bytes"]) for i in table.column("image").to_pylist()])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        preds = model(x).argmax(1).numpy()
    assert preds.tolist() == table.column("pred").to_pylist()


def test_manifest_hashes_every_file(corpus):
    out = corpus.out
    entries = corpus.manifest["files"]
    listed = {e["path"] for e in entries}
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.parts[len(out.parts)] in ("data", "wds", "model")
    }
    assert listed == on_disk
    for entry in entries:
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        if entry["path"].endswith(".parquet"):
            assert pq.read_metadata(out / entry["path"]).num_rows == entry["rows"]
    assert json.loads((out / "manifest.json").read_text())["model"]["sha256"] == next(
        e["sha256"] for e in entries if e["path"] == "model/model.safetensors"
    )


def test_webdataset_reads_the_shards_without_pickle(corpus):
    urls = sorted(glob.glob(f"{corpus.out}/wds/*/train-*.tar"))
    members = set()
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("rgb8")
    samples = list(dataset)
    for sample in samples:
        members |= {k for k in sample if not k.startswith("__")}
        assert sample["genome_spatial.npy"].dtype == np.float16
    assert members == {"png", "json", "genome_spatial.npy", "genome_channels.npy"}
    assert len(samples) == corpus.manifest["splits"]["train"]["records"]


def test_card_lists_configs_and_features(corpus):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(corpus.out / "README.md")
    configs = {c["config_name"]: c for c in card.data.configs}
    assert set(configs) == {"all", "fgsm", "pgd", "cw_l2"}
    assert configs["all"].get("default") is True
    assert card.data.task_categories == ["image-classification"]
    assert "adversarial-examples" in card.data.tags
    assert "non-adaptive" in card.text


def test_same_config_same_bytes(corpus, small_config, tmp_path, monkeypatch):
    """A second build, with the target model retrained from scratch, writes identical bytes."""
    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path / "fresh-cache"))
    again = build_corpus(small_config, tmp_path / "again", progress=False)
    assert not again.stats["target_model"]["cached"]
    assert [(e["path"], e["sha256"]) for e in again.manifest["files"]] == [
        (e["path"], e["sha256"]) for e in corpus.manifest["files"]
    ]


def test_refuses_to_mix_corpora(corpus, small_config):
    with pytest.raises(OutputDirError, match="different corpus"):
        build_corpus(small_config.replace(seed=1), corpus.out, progress=False)
    assert (corpus.out / "manifest.json").is_file()


def test_refuses_foreign_directory(tmp_path, small_config):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(OutputDirError, match="holds no AFG corpus"):
        build_corpus(small_config, tmp_path, progress=False, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_crash_mid_build_leaves_nothing_that_looks_complete(tmp_path, small_config, monkeypatch):
    import afg_datasets.building.task as task_module

    calls = {"n": 0}
    original = task_module.attacked_records

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 4:  # the first batch's attacks written, the second's cut off
            raise RuntimeError("simulated crash")
        return original(*args)

    monkeypatch.setattr(task_module, "attacked_records", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        build_corpus(small_config, tmp_path / "c", progress=False)
    out = tmp_path / "c"
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists()
    assert not list(out.rglob("*.parquet")) and not list(out.rglob("*.tar"))


runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attacks", "fgsm,carlini"], "carlini"),
        (["no-such-builder"], "no-such-builder"),
        (["--device", "tpu"], "tpu"),
        (["--limit", "0"], "limit"),
    ],
)
def test_cli_bad_input_exit_2_and_nothing_written(tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["build-shards", *args, "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_cli_unknown_layer(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {layers: [block1, fc9]}\nattacks: [fgsm]\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["build-shards", str(config), "--out", str(out), "--limit", "4"])
    assert result.exit_code == 2
    assert "fc9" in result.output and "block2" in result.output
    assert not out.exists()


def test_cli_builds_and_summarizes(tmp_path):
    out = tmp_path / "cli"

    def build(*extra):
        args = ["build-shards", "--out", str(out), "--limit", "8", "--attacks", "fgsm"]
        return runner.invoke(app, [*args, "--no-progress", *extra])

    result = build()
    assert result.exit_code == 0, result.output
    assert "success rate" in result.output and "fgsm" in result.output
    assert "already complete" not in result.output
    assert os.path.isfile(Path(out) / "manifest.json")
    rerun = build()
    assert rerun.exit_code == 0 and "already complete" in rerun.output, "old stats not as new"
    again = build("--seed", "2")
    assert again.exit_code == 2 and "--overwrite" in again.output
    replaced = build("--seed", "2", "--overwrite")
    assert replaced.exit_code == 0, replaced.output


def test_a_parquet_only_build_writes_half_and_is_a_whole_corpus(corpus, small_config, tmp_path):
    from afg_datasets.corpus.corpus import verify_corpus

    cfg = small_config.replace(formats=("parquet",))
    built = build_corpus(cfg, tmp_path / "afg", progress=False)
    assert not (built.out / "wds").exists() and verify_corpus(built.out) == []
    ours = {p.relative_to(built.out) for p in (built.out / "data").rglob("*.parquet")}
    theirs = {p.relative_to(corpus.out) for p in (corpus.out / "data").rglob("*.parquet")}
    assert ours == theirs
    for path in ours:  # the same records, byte for byte
        assert (built.out / path).read_bytes() == (corpus.out / path).read_bytes()
    card = (built.out / "README.md").read_text()
    assert "wds/" not in card and "data/clean" in card
    assert cfg.config_hash() != small_config.config_hash()
    with pytest.raises(CorpusError, match="no webdataset shards"):
        afg_datasets.stream(built.out, split="train")


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        (("webdataset",), "'parquet' among them"),
        (("parquet", "parquet"), "each at most once"),
        (("parquet", "arrow"), "unknown format 'arrow'; valid formats: parquet, webdataset"),
    ],
)
def test_bad_formats_are_refused_naming_the_choices(small_config, formats, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        small_config.replace(formats=formats)
