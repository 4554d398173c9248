"""Hostile inputs, round 3: a stranger's files never run code or leave the machine, numbers
and documents read from files are bounded, and each failure is one error line."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from afg_datasets.build import threads
from afg_datasets.config import load_config
from afg_datasets.errors import ConfigError, CorpusError, ModelError, SourceError
from afg_datasets.loader import stream
from afg_datasets.models.nets import architecture
from afg_datasets.sources.bundled import read_cifar_batch
from tests.test_publish import run_cli


@pytest.fixture()
def copy(corpus, tmp_path):
    target = tmp_path / "afg"
    shutil.copytree(corpus.out, target)
    return target


def _rewrite_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def _one_error_line(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- security: nothing outside the corpus is read or uploaded --------------------------------


def test_push_refuses_a_derived_folder_linked_outside_the_corpus(copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "results.json").write_text('{"secret": 1}')
    (copy / "bench").symlink_to(outside, target_is_directory=True)
    result = run_cli("push", str(copy), "--repo-id", "a/b", "--dry-run")
    _one_error_line(result, "bench", "symlink")


def test_push_recognizer_refuses_a_folder_linked_outside(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    for name in ("README.md", "config.json", "model.safetensors", "recognizer.json"):
        (root / name).write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.json").write_text("{}")
    (outside / "model.safetensors").write_text("secret")
    (root / "target_model").symlink_to(outside, target_is_directory=True)
    result = run_cli("push-recognizer", str(root), "--repo-id", "a/b", "--dry-run")
    _one_error_line(result, "target_model", "symlink")


def _rehash(root: Path, relative: str) -> None:
    data = (root / relative).read_bytes()

    def change(manifest):
        for entry in manifest["files"]:
            if entry["path"] == relative:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                entry["bytes"] = len(data)

    _rewrite_manifest(root, change)


def test_stream_refuses_a_shard_outside_the_corpus_or_behind_a_link(copy, tmp_path):
    shard = next((copy / "wds" / "train").glob("*.tar"))
    relative = shard.relative_to(copy).as_posix()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(shard, outside / shard.name)
    escaped = f"wds/train/../../../outside/{shard.name}"

    def escape(manifest):
        for entry in manifest["files"]:
            if entry["path"] == relative:
                entry["path"] = escaped

    _rewrite_manifest(copy, escape)
    with pytest.raises(CorpusError, match="not a normalized relative path"):
        next(iter(stream(copy, split="train")))
    _rewrite_manifest(copy, lambda m: None)
    shutil.copytree(copy, tmp_path / "linked")
    linked = tmp_path / "linked"
    _rewrite_manifest(
        linked, lambda m: [e.update(path=relative) for e in m["files"] if e["path"] == escaped]
    )
    (linked / relative).unlink()
    (linked / relative).symlink_to(outside / shard.name)
    with pytest.raises(CorpusError, match="symlink"):
        next(iter(stream(linked, split="train")))


def test_stream_compares_sizes_before_reading_a_shard(copy):
    shard = next((copy / "wds" / "train").glob("*.tar"))
    with open(shard, "r+b") as handle:  # a sparse 3 GB file in place of the shard
        handle.truncate(3 * 2**30)
    start = time.perf_counter()
    with pytest.raises(CorpusError, match="bytes, manifest says"):
        stream(copy, split="train")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "spec, words",
    [
        ("os:system", ["os:system", "standard library"]),
        ("this:x", ["this:x", "standard library"]),
        ("builtins:dict", ["builtins:dict", "standard library"]),
        (":x", ["':x'", "package.module:callable"]),
        (".x:y", ["'.x:y'", "package.module:callable"]),
        ("a:b:c", ["'a:b:c'", "package.module:callable"]),
    ],
)
def test_model_code_from_the_standard_library_or_malformed_is_refused(spec, words, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config("digits", model_code=spec).replace(model__architecture=spec)
    assert all(word in str(caught.value) for word in words)
    assert "this" not in sys.modules or spec != "this:x"


@pytest.mark.parametrize("command", ["build-shards", "estimate"])
def test_the_cli_refuses_model_code_in_one_line_before_importing_it(command, tmp_path):
    spec = "this:x"  # importing `this` prints the Zen of Python
    result = run_cli(
        command,
        "--model",
        spec,
        "--limit" if command == "build-shards" else "--json",
        *(["4", "--out", str(tmp_path / "o")] if command == "build-shards" else []),
        cwd=tmp_path,
    )
    _one_error_line(result, "this:x", "standard library")
    assert "Zen of Python" not in result.stdout
    assert not (tmp_path / "o").exists()


def test_a_config_file_alone_never_runs_model_code(tmp_path):
    config = tmp_path / "evil.yaml"
    config.write_text("model:\n  architecture: mypkg.nets:make\n")
    with pytest.raises(ConfigError, match="never runs code; pass --model mypkg.nets:make"):
        load_config(str(config))
    assert load_config(str(config), model_code="mypkg.nets:make").model.architecture == (
        "mypkg.nets:make"
    )


def test_a_user_model_must_return_a_module(tmp_path, monkeypatch):
    (tmp_path / "usermods.py").write_text(
        "import torch\n"
        "def number(num_classes):\n    return 42\n"
        "def net(num_classes):\n    return torch.nn.Linear(4, num_classes)\n"
        "def broken(num_classes):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match="returned int, not a torch.nn.Module"):
        architecture("usermods:number").build(1, 10, 8)
    with pytest.raises(ModelError, match="failed: RuntimeError: boom"):
        architecture("usermods:broken").build(1, 10, 8)
    assert architecture("usermods:net").build(1, 10, 8).out_features == 10


class _Payload:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_a_cifar_batch_that_would_run_code_is_refused_unread(tmp_path):
    sentinel = tmp_path / "pwned"
    hostile = tmp_path / "data_batch_1"
    hostile.write_bytes(pickle.dumps({"data": _Payload(sentinel), "labels": [0]}))
    with pytest.raises(SourceError, match="posix.system is not allowed|os.system is not allowed"):
        read_cifar_batch(hostile)
    assert not sentinel.exists()
    honest = tmp_path / "data_batch_2"
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    honest.write_bytes(pickle.dumps({b"batch_label": b"x", "data": data, "labels": [1, 2]}))
    batch = read_cifar_batch(honest)
    assert np.array_equal(batch["data"], data) and batch["labels"] == [1, 2]


def test_the_thread_registry_never_writes_through_or_reads_a_planted_link(tmp_path, monkeypatch):
    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path / "cache"))
    running = threads.registry()
    running.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (running / str(os.getpid())).symlink_to(victim)
    (running / "1").symlink_to("/dev/zero")  # pid 1 is alive
    (running / "99999999999999999999").write_text("3")
    with threads.registered(2):
        assert threads.node_processes() == 2 + 1  # this build's 2, the planted entry as 1
    assert victim.read_text() == "keep"


# --- hangs and unbounded documents -----------------------------------------------------------

BOMB = """
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
name: *g
"""


@pytest.mark.parametrize(
    "text, words",
    [
        (BOMB, "aliases expanded"),
        ("name: " + "[" * 200 + "]" * 200, "nested deeper"),
        ("attacks:\n  fgsm: {eps: " + "9" * 400 + "}\n", "too many digits"),
        ("1: 2\nname: x\n", "is not a name"),
    ],
)
def test_hostile_yaml_is_one_config_error_at_once(tmp_path, text, words):
    config = tmp_path / "hostile.yaml"
    config.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=words):
        load_config(str(config))
    assert time.perf_counter() - start < 10
    if text is BOMB:
        result = run_cli("build-shards", str(config), "--out", str(tmp_path / "o"))
        _one_error_line(result, "hostile.yaml", "aliases expanded")


def test_hostile_json_in_a_corpus_is_one_corpus_error(copy):
    (copy / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli("verify", str(copy))
    _one_error_line(result, "manifest.json")
    (copy / "manifest.json").write_text('{"name": ' + "1" * 5000 + "}")
    _one_error_line(run_cli("verify", str(copy)), "manifest.json", "digits")
