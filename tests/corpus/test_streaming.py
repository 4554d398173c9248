"""Streaming sources in real builds: decoding per task, loader workers, bad images at decode
time, `--limit` before decoding, and the wds source end to end across ranks."""

from __future__ import annotations

import json

import pytest
from datasets import load_dataset
from PIL import Image

from afg_datasets.building import build_corpus
from afg_datasets.building import task as task_module
from afg_datasets.building.splits import assign_splits
from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import verify_corpus
from afg_datasets.errors import SourceError
from afg_datasets.layout import MANIFEST_FILE, STATS_FILE, TASKS_DIR
from afg_datasets.sources.base import stable_id
from afg_datasets.sources.folders import FileReader
from tests.samples import save_resnet18, write_folder, write_wds


def config(name: str, root, checkpoint=None, **changes) -> BuildConfig:
    model = {"architecture": "resnet18", "checkpoint": str(checkpoint)} if checkpoint else {}
    data = {
        "batch_size": 2,
        "sources_per_task": 4,
        "source": {"name": name, "root": str(root), "image_size": 32},
        "model": {"epochs": 1, **model},
        "attacks": {"fgsm": {}},
    }
    return BuildConfig.from_dict(data).replace(**changes)


def file_hashes(out) -> dict[str, str]:
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    return {e["path"]: e["sha256"] for e in manifest["files"]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_resnet18(tmp_path_factory.mktemp("ckpt") / "r18.pt", num_classes=3)


def test_loader_workers_never_change_a_byte(tmp_path):
    root = write_folder(tmp_path / "folder", corrupt=False)
    builds = {}
    for workers in (0, 2):
        out = tmp_path / f"afg-{workers}"
        build_corpus(config("imagefolder", root, source__workers=workers), out, progress=False)
        builds[workers] = file_hashes(out)
    assert builds[0] == builds[2]


def test_limit_decodes_only_the_images_the_build_uses(tmp_path, checkpoint, monkeypatch):
    root = write_folder(tmp_path / "folder", corrupt=False)
    opened: list[int] = []
    original = FileReader.open_item
    monkeypatch.setattr(
        FileReader, "open_item", lambda self, i: (opened.append(i), original(self, i))[1]
    )
    cfg = config("imagefolder", root, checkpoint, limit=4, source__workers=0)
    result = build_corpus(cfg, tmp_path / "afg", progress=False)
    assert sum(s["sources"] for s in result.manifest["splits"].values()) == 4
    assert opened and max(opened) < 4, "no image past --limit is decoded"


def write_broken_folder(root, seed: int = 0):
    """A folder whose one unreadable image lands in the train split (so setup never reads it)."""
    write_folder(root, corrupt=False)
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    for k in range(100):
        name = f"owl/zz-broken-{k}.jpg"
        if assign_splits((stable_id("img", name),), seed, ratios)[0] == "train":
            (root / name).write_bytes(b"definitely not a jpeg")
            return root / name
    raise AssertionError("no train-split name found")


def test_bad_image_mid_task_skip_records_it(tmp_path, checkpoint):
    root = tmp_path / "folder"
    broken = write_broken_folder(root)
    cfg = config("imagefolder", root, checkpoint, source__on_bad_image="skip")
    out = tmp_path / "afg"
    result = build_corpus(cfg, out, progress=False)
    assert result.manifest["source"] == {**result.manifest["source"], "images": 10, "skipped": 1}
    stats = json.loads((out / STATS_FILE).read_text())
    assert len(stats["skipped_sources"]) == 1 and "broken" in stats["skipped_sources"][0]
    assert sum(s["sources"] for s in result.manifest["splits"].values()) == 9
    assert "1 unreadable" in (out / "README.md").read_text()
    assert verify_corpus(out) == [] and broken.exists()


def test_bad_image_mid_task_error_names_it_and_resumes_once_fixed(tmp_path, checkpoint):
    root = tmp_path / "folder"
    broken = write_broken_folder(root)
    cfg = config("imagefolder", root, checkpoint)
    out = tmp_path / "afg"
    with pytest.raises(SourceError, match=broken.name):
        build_corpus(cfg, out, progress=False)
    assert not (out / MANIFEST_FILE).exists()
    assert not list(out.rglob("*.partial")), "nothing half-written"
    done = list((out / TASKS_DIR).glob("0*.json"))
    assert len(done) == 2, "tasks before the bad image are complete and kept"
    Image.new("RGB", (40, 40), "white").save(broken, format="JPEG")
    result = build_corpus(cfg, out, progress=False)
    assert result.tasks_run == [2] and verify_corpus(out) == []


def test_wds_source_builds_a_corpus_that_loads(tmp_path, checkpoint):
    root = write_wds(tmp_path / "shards")
    out = tmp_path / "afg"
    result = build_corpus(config("wds", root, checkpoint), out, progress=False)
    assert result.manifest["source"]["class_names"] == ["ant", "bee", "cow"]
    dataset = load_dataset(str(out), "fgsm")
    assert sum(len(split) for split in dataset.values()) == 16
    assert verify_corpus(out) == []


def test_hf_source_builds_a_corpus_that_loads(tmp_path):
    from tests.samples import write_hf

    root = tmp_path / "hf"
    write_hf(root)
    out = tmp_path / "afg"
    result = build_corpus(config("hf", root), out, progress=False)
    assert result.manifest["source"]["class_names"] == ["a", "b"]
    dataset = load_dataset(str(out), "fgsm")
    assert sum(len(split) for split in dataset.values()) == 8
    assert verify_corpus(out) == []


def test_wds_ranks_read_disjoint_shards(tmp_path, checkpoint, monkeypatch):
    root = write_wds(tmp_path / "shards", shards=2, per_shard=4)
    read: dict[int, set[int]] = {}
    rank = [0]
    original = task_module.decode_batches

    def spy(reader, batches, workers):
        shards = {int(s) for b in batches for s in reader.members[b, 0]}
        read.setdefault(rank[0], set()).update(shards)
        return original(reader, batches, workers)

    monkeypatch.setattr(task_module, "decode_batches", spy)
    cfg = config("wds", root, checkpoint)
    for rank[0] in (0, 1):
        build_corpus(cfg, tmp_path / "afg", progress=False, rank=rank[0], world_size=2)
    assert read == {0: {0}, 1: {1}}
    assert verify_corpus(tmp_path / "afg") == []
