"""`afg extend`: a corpus grows by attacks without a stored byte changing, into what a fresh
build with all the attacks gives; cut off, it resumes; bad input leaves the corpus as it was;
a re-push uploads only what is new or rewritten."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

import afg_datasets.building.extend as extend_module
from afg_datasets.building import build_corpus
from afg_datasets.building.extend import extend_corpus
from afg_datasets.config import load_config
from afg_datasets.corpus.corpus import Corpus
from tests.fake_hub import FakeHub
from tests.samples import TOKEN, run_cli

pytestmark = pytest.mark.slow  # minutes of one worker (`-m 'not slow'` skips it)


BASE, ADDED = {"fgsm": {}}, ["square", "deepfool"]


def config(attacks: dict):
    # 3 tasks of 8 sources, batches of 4: several row groups per shard
    return load_config("digits").replace(
        limit=24, sources_per_task=8, batch_size=4, attacks=attacks
    )


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh build with every attack: what an extend must equal."""
    out = tmp_path_factory.mktemp("fresh") / "afg"
    build_corpus(config({**BASE, **{a: {} for a in ADDED}}), out, progress=False)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "afg"
    build_corpus(config(BASE), out, progress=False)
    return out


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every stored file: sha256, inode and mtime (a rewrite changes one of them)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.parts[len(root.parts)] in ("data", "wds", "model"):
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, stat.st_ino, stat.st_mtime_ns)
    return found


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_an_extended_corpus_is_a_fresh_build_and_keeps_every_stored_file(base, fresh, tmp_path):
    root = tmp_path / "afg"
    shutil.copytree(base, root)
    before = snapshot(root)
    extend_corpus(root, ADDED, progress=False)
    after = snapshot(root)
    assert {path: after[path] for path in before} == before, "no stored file rewritten"
    assert manifest(root) == manifest(fresh)  # every file's sha256, the config, the hash
    assert not Corpus.open(root).problems and (root / "examples.png").is_file()
    assert "square" in (root / "README.md").read_text()


def test_extend_in_task_processes_gives_the_same_bytes(base, fresh, tmp_path):
    """Two spawned processes of one thread each, as a build's workers: the count changes no
    byte."""
    root = tmp_path / "afg"
    shutil.copytree(base, root)
    extend_corpus(root, ADDED, progress=False, workers=2)
    assert manifest(root) == manifest(fresh)


def test_an_extend_cut_off_resumes_to_the_same_corpus(base, fresh, tmp_path, monkeypatch):
    root = tmp_path / "afg"
    shutil.copytree(base, root)
    real = extend_module._run_new_attacks

    def cut_at_task_1(ctx, task, *args):
        if task.id == 1:
            raise KeyboardInterrupt  # as a kill between tasks
        return real(ctx, task, *args)

    monkeypatch.setattr(extend_module, "_run_new_attacks", cut_at_task_1)
    with pytest.raises(KeyboardInterrupt):
        extend_corpus(root, ADDED, progress=False)
    monkeypatch.setattr(extend_module, "_run_new_attacks", real)
    assert manifest(root) == manifest(base)  # the old corpus still stands, whole
    extend_corpus(root, ADDED, progress=False)
    assert manifest(root) == manifest(fresh)
    assert not list(root.rglob("*.partial"))


def test_extend_into_out_links_the_parents_files(base, fresh, tmp_path):
    before = snapshot(base)
    done = run_cli("extend", str(base), "--attacks", ",".join(ADDED), "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert snapshot(base) == before and manifest(tmp_path / "x") == manifest(fresh)
    kept = (tmp_path / "x" / "data" / "fgsm").iterdir()
    assert all(os.stat(path).st_nlink == 2 for path in kept)  # linked, not copied
    locks = list((tmp_path / "x").rglob("*.lock"))  # its own: flock is per inode
    assert locks and all(os.stat(path).st_nlink == 1 for path in locks)


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown", "valid attacks: advertorch: fgsm"),
        ("held", "already in the corpus"),
        ("repeated", "repeats a name"),
        ("newer format", "a corpus of format 1.9"),
        ("hub copy", "no plan.json"),
        ("hub repo", "is a Hub repo"),
        ("out inside", "inside the corpus"),
        ("out exists", "a folder that exists"),
    ],
)
def test_bad_extends_are_one_line_and_touch_nothing(base, tmp_path, case, words):
    root = tmp_path / "afg"
    shutil.copytree(base, root)
    attacks, target = "square", str(root)
    if case == "unknown":
        attacks = "carlini"
    elif case == "held":
        attacks = "square,fgsm"
    elif case == "repeated":
        attacks = "square,square"
    elif case == "newer format":
        data = manifest(root) | {"format_version": "1.9"}
        (root / "manifest.json").write_text(json.dumps(data))
    elif case == "hub copy":
        (root / "plan.json").unlink()
    elif case == "hub repo":
        target = "someone/afg-digits"
    out = {"out inside": ["--out", str(root / "grown")], "out exists": ["--out", str(tmp_path)]}
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    done = run_cli("extend", target, "--attacks", attacks, *out.get(case, []))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and words in lines[-1], lines[-3:]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_push_after_an_extend_uploads_only_what_changed(base, tmp_path):
    root = tmp_path / "afg"
    shutil.copytree(base, root)
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        assert run_cli("push", str(root), "--repo-id", "me/x", env=env).returncode == 0
        extend_corpus(root, ADDED, progress=False)
        hub.received.clear()
        assert run_cli("push", str(root), "--repo-id", "me/x", env=env).returncode == 0
    new = {e["path"] for e in manifest(root)["files"]} - {
        e["path"] for e in manifest(base)["files"]
    }
    rewritten = {"README.md", "croissant.json", "manifest.json", "stats.json", "examples.png"}
    assert new and set(hub.received) == new | rewritten
