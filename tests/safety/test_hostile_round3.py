"""Hostile inputs, round 3: a stranger's files never run code or leave the machine, numbers
and documents read from files are bounded, and each failure is one error line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from afg_datasets.building import threads
from afg_datasets.config import load_config
from afg_datasets.corpus.loader import stream
from afg_datasets.errors import ConfigError, CorpusError, ModelError, SourceError
from afg_datasets.models.nets import architecture
from afg_datasets.sources import load_source, source_config
from afg_datasets.sources.bundled import read_cifar_batch
from tests.samples import run_cli


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
    shard = next((copy / "wds").glob("*/train-*.tar"))
    relative = shard.relative_to(copy).as_posix()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(shard, outside / shard.name)
    escaped = f"wds/{shard.parent.name}/../../../outside/{shard.name}"

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
    shard = next((copy / "wds").glob("*/train-*.tar"))
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
        assert threads.node_processes() == 2  # this build's 2; a planted link is not ours: skipped
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


# --- silent corruption: every byte accounted for, every pixel in its real range --------------


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_zero_filled_or_misnumbered_shard_in_url_mode_is_an_error(copy, tmp_path):
    shard = sorted((copy / "wds").glob("*/test-*.tar"))[0]
    whole = shard.read_bytes()
    count = len(list(stream([str(shard)])))
    with tarfile.open(shard) as tar:
        middle = tar.getmembers()[len(tar.getmembers()) // 2].offset
    # a download preallocated, then cut off. The zeros must outrun the largest tar record
    # (blocking factor 256: 128 KiB), or they are padding a URL-mode reader cannot tell from
    # an end; a format 1.6 shard (one variant) can be smaller than that, and then only a
    # corpus's manifest (sizes, sha256) catches the cut
    tail = max(len(whole) - middle, 256 * 512 + 1024)
    preallocated = tmp_path / "partial.tar"
    preallocated.write_bytes(whole[:middle] + bytes(tail))
    with pytest.raises(CorpusError, match="zero-filled"):
        list(stream([str(preallocated)]))
    for digit in (b"8", b"9", b" ", b"_"):  # one size digit of the second header flipped
        with tarfile.open(shard) as tar:
            second = tar.getmembers()[1].offset
        damaged = bytearray(whole)
        damaged[second + 124 + 5 : second + 124 + 6] = digit
        path = tmp_path / f"flip-{digit[0]}.tar"
        path.write_bytes(bytes(damaged))
        try:
            found = len(list(stream([str(path)])))
        except CorpusError:
            continue
        assert found == count, f"{digit!r}: {found} of {count} records, no error"


def _png16(tmp_path: Path, name: str, levels: np.ndarray, fmt: str = "png") -> None:
    folder = tmp_path / "folder" / "a"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(levels).save(folder / f"{name}.{fmt}")


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_greyscale_images_keep_their_range(tmp_path, fmt):
    levels = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    _png16(tmp_path, "ramp", levels, fmt)
    source = load_source(source_config("imagefolder", root=str(tmp_path / "folder"), image_size=32))
    pixels = source.reader.read(np.arange(1)).images[0, ..., 0].astype(int)
    expected = (levels.astype(np.int64) * 255 + 32767) // 65535
    assert np.abs(pixels - expected).max() <= 1 and pixels.max() == 255 and pixels.min() == 0


def test_images_without_a_defined_range_are_refused_by_name(tmp_path):
    _png16(tmp_path, "wide", np.full((8, 8), 7, dtype=np.int32), "tiff")
    cfg = source_config("imagefolder", root=str(tmp_path / "folder"), image_size=8)
    with pytest.raises(SourceError, match="mode 'I'.*no defined range"):
        load_source(cfg).check(load_source(cfg).reader.read(np.arange(1)))


def _wds_shard(path: Path, samples: list[tuple[str, str, bytes]]) -> None:
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, "png")
    members = []
    for key, ext, data in samples:
        members.append((f"{key}.png", png.getvalue()))
        members.append((f"{key}.{ext}", data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tar(members))


@pytest.mark.parametrize(
    "samples, words",
    [
        ([("a", "cls", b"1"), ("b", "cls", b"2"), ("a", "txt", b"x")], "appears again"),
        ([("a", "cls", b"1000000000")], "0..99999"),
        ([("a", "cls", b"100000000000000000000")], "0..99999"),
        ([("a", "json", b'{"label": 1e300}')], "0..99999"),
        ([("a", "json", b'{"label": Infinity}')], "not a JSON number"),
        ([("a", "json", b'{"label": ' + b"9" * 400 + b"}")], "too many digits"),
    ],
)
def test_wds_source_refuses_split_samples_and_unbounded_labels(tmp_path, samples, words):
    _wds_shard(tmp_path / "shards" / "s-0.tar", samples)
    with pytest.raises(SourceError, match=words):
        load_source(source_config("wds", root=str(tmp_path / "shards"), image_size=8))


def test_wds_source_bounds_patterns_and_refuses_pipes(tmp_path):
    start = time.perf_counter()
    with pytest.raises(SourceError, match="more than"):
        load_source(source_config("wds", root=str(tmp_path / "x-{0..999999999}.tar")))
    assert time.perf_counter() - start < 10
    _wds_shard(tmp_path / "shards" / "s-0.tar", [("a", "cls", b"1")])
    os.mkfifo(tmp_path / "shards" / "s-1.tar")
    with pytest.raises(SourceError, match="not a regular file"):
        load_source(source_config("wds", root=str(tmp_path / "shards"), image_size=8))


# --- data loss: only this package's own folders are ever overwritten -------------------------


def test_a_folder_with_someone_elses_manifest_is_never_overwritten(tmp_path):
    out = tmp_path / "theirs"
    (out / "data").mkdir(parents=True)
    (out / "data" / "precious.csv").write_text("1,2,3")
    (out / "model").mkdir()
    (out / "model" / "weights.bin").write_text("w")
    (out / "manifest.json").write_text(json.dumps({"config_hash": "abc", "files": []}))
    result = run_cli("build-shards", "--out", str(out), "--overwrite", "--limit", "8")
    _one_error_line(result, "did not write", "untouched")
    assert (out / "data" / "precious.csv").read_text() == "1,2,3"
    assert (out / "model" / "weights.bin").exists()


# --- tracebacks: every error a user can cause is one line -------------------------------------


def test_garbage_shards_with_recomputed_hashes_are_verify_problems(copy):
    parquet = next((copy / "data" / "clean").glob("*.parquet"))
    tar = next((copy / "wds").glob("*/test-*.tar"))
    for path in (parquet, tar):
        path.write_bytes(b"garbage" * 100)
        _rehash(copy, path.relative_to(copy).as_posix())
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a readable parquet file" in result.stdout + result.stderr
    assert "not a readable tar file" in result.stdout + result.stderr


def test_a_broken_card_is_a_verify_problem_and_a_push_error(copy):
    card = copy / "README.md"
    card.write_text("---\nconfigs: [unclosed\n---\n" + card.read_text().split("---", 2)[2])
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "dataset_info" in result.stdout + result.stderr
    _one_error_line(run_cli("push", str(copy), "--repo-id", "a/b", "--dry-run"), "README.md")


@pytest.mark.parametrize(
    "args, words",
    [
        (["bench-loader", "{corpus}", "--split", "nosuch"], ["nosuch", "train"]),
        (["afs", "{corpus}", "--split", "nosuch"], ["nosuch", "train"]),
        (["show", "{corpus}", "digits-00000-fgsm", "--out", "x.unknownext"], ["x.unknownext"]),
    ],
)
def test_bad_command_arguments_are_one_line(corpus, tmp_path, args, words):
    args = [a.replace("{corpus}", str(corpus.out)) for a in args]
    _one_error_line(run_cli(*args, cwd=tmp_path), *words)


def test_a_manifest_without_layers_is_refused(copy):
    _rewrite_manifest(copy, lambda m: m.update(layers=[]))
    _one_error_line(run_cli("verify", str(copy)), "layers")


def test_fit_recognizer_on_a_corpus_without_validation_records_is_one_line(tmp_path):
    out = tmp_path / "tiny"
    assert (
        run_cli(
            "build-shards", "--limit", "6", "--attacks", "fgsm", "--out", str(out), "--no-progress"
        ).returncode
        == 0
    )
    result = run_cli("fit-recognizer", str(out), "--out", str(tmp_path / "rec"))
    _one_error_line(result, "validation", "at least 1")


def _saved_recognizer(corpus, tmp_path) -> Path:
    from afg_datasets.recognizer import Recognizer
    from afg_datasets.recognizer.training import TrainConfig

    path = tmp_path / "rec"
    Recognizer.fit(corpus.out, train_cfg=TrainConfig(epochs=1)).save(path)
    return path


def test_hostile_recognizer_folders_are_one_model_error(corpus, tmp_path):
    from afg_datasets.recognizer import Recognizer

    saved = _saved_recognizer(corpus, tmp_path)
    cases = {
        "groups": lambda info: info["manifest"]["config"]["genome"].update(groups=10**6),
        "layers": lambda info: info["manifest"].update(
            layers=[{"name": "x", "channels": 10**9, "height": 1, "width": 1}]
        ),
        "nested": lambda info: info.update(deep=json.loads("[" * 200 + "]" * 200)),
    }
    for name, change in cases.items():
        folder = tmp_path / name
        shutil.copytree(saved, folder)
        info = json.loads((folder / "recognizer.json").read_text())
        change(info)
        (folder / "recognizer.json").write_text(json.dumps(info))
        with pytest.raises((ModelError, CorpusError)):
            Recognizer.from_pretrained(folder)
    garbage = tmp_path / "garbage"
    shutil.copytree(saved, garbage)
    (garbage / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError):
        Recognizer.from_pretrained(garbage)
    listed = tmp_path / "listed"
    shutil.copytree(saved, listed)
    (listed / "target_model" / "model.json").write_text("[]")
    recognizer = Recognizer.from_pretrained(listed)
    with pytest.raises(CorpusError, match="model.json"):
        recognizer.predict(np.zeros((1, 32, 32, 1), np.uint8))


def test_a_tampered_shard_is_reported_as_tampered_whatever_the_parse_finds(copy):
    shard = next((copy / "wds").glob("*/test-*.tar"))
    data = bytearray(shard.read_bytes())
    start = data.index(b'"label": ') + len(b'"label": ')
    data[start : start + 1] = b"9"  # a label of 9e...: not a class id
    shard.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match="sha256 differs"):
        list(stream(copy, split="test"))
