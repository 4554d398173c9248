"""A corpus from a stranger is data, never code: hostile corpora and careless inputs."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from afg_datasets.building import RunOptions, build_corpus
from afg_datasets.corpus.corpus import Corpus, verify_corpus
from afg_datasets.corpus.loader import stream
from afg_datasets.corpus.manifest import load_manifest
from afg_datasets.errors import ConfigError, CorpusError, ModelError
from afg_datasets.layout import AFS_JSON, AFS_PNG, BENCH_DIR
from afg_datasets.models import load_target_model
from afg_datasets.publish.hub import PushError, upload_plan
from tests.samples import write_idx as write

RETRY_WARNINGS = 2  # one logged line per transient failure before the last attempt


def rewrite_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_model_code_shipped_in_a_corpus_is_never_imported(copy, tmp_path, monkeypatch):
    sentinel = tmp_path / "pwned"
    (copy / "model" / "evil.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('x')\ndef build(num_classes):\n    raise SystemExit\n"
    )
    info = json.loads((copy / "model" / "model.json").read_text())
    info["architecture"] = "afg.model.evil:build"
    (copy / "model" / "model.json").write_text(json.dumps(info))
    monkeypatch.chdir(copy.parent)
    monkeypatch.syspath_prepend(str(copy.parent))
    with pytest.raises(ModelError, match="nothing a corpus names is imported"):
        load_target_model(copy)
    assert not sentinel.exists() and "afg.model.evil" not in sys.modules


def test_verify_refuses_paths_outside_the_corpus_and_symlinks(copy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    rewrite_manifest(
        copy,
        lambda m: m["files"].extend(
            [
                {"path": "../secret.txt", "sha256": "0" * 64, "bytes": 7, "rows": None},
                {"path": str(secret), "sha256": "0" * 64, "bytes": 7, "rows": None},
            ]
        ),
    )
    (copy / "data" / "leak.png").symlink_to(secret)
    problems = "\n".join(verify_corpus(copy))
    assert "../secret.txt: not a normalized relative path" in problems
    assert f"{secret}: not a normalized relative path" in problems
    assert "data/leak.png: a symlink" in problems
    assert "7 bytes" not in problems  # the size of a file outside the corpus is not disclosed


def test_verify_refuses_pickle_members_in_a_shard(copy):
    shard = sorted((copy / "wds").glob("*/train-*.tar"))[0]
    with tarfile.open(shard, "a") as tar:
        payload = b"\x80\x04K\x01."
        member = tarfile.TarInfo("evil.pyd")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    from afg_datasets.layout import sha256_file

    def relist(manifest):
        for entry in manifest["files"]:
            if entry["path"] == shard.relative_to(copy).as_posix():
                entry["sha256"], entry["bytes"] = sha256_file(shard), shard.stat().st_size

    rewrite_manifest(copy, relist)
    assert any("'evil.pyd' has a suffix outside" in p for p in verify_corpus(copy))


def test_push_uploads_exactly_the_manifest_files_never_a_symlink(copy, tmp_path):
    (tmp_path / "secret").write_text("token")
    (copy / "leak.png").symlink_to(tmp_path / "secret")
    (copy / "notes.png").write_text("not in the manifest")
    plan = {f.path for f in upload_plan(Corpus.open(copy))}
    listed = {e["path"] for e in load_manifest(copy)["files"]}
    extras = {"README.md", "croissant.json", "manifest.json", "stats.json", "examples.png"}
    assert plan == listed | extras
    (copy / AFS_PNG).symlink_to(tmp_path / "secret")
    with pytest.raises(PushError, match="a symlink"):
        upload_plan(Corpus.open(copy))


def test_stream_reads_the_manifest_shards_not_a_glob(copy):
    shards = sorted((copy / "wds").glob("*/test-*.tar"))
    extra = shards[0].with_name("test-99999-of-99999.tar")
    shutil.copy(shards[0], extra)  # unlisted: never streamed
    listed = sum(1 for _ in stream(copy, split="test"))
    assert listed == load_manifest(copy)["splits"]["test"]["records"]
    shards[0].unlink()  # listed but missing: an error, not a short stream
    with pytest.raises(CorpusError, match="missing"):
        list(stream(copy, split="test"))


def test_overwrite_removes_derived_figures_of_the_old_corpus(small_config, tmp_path):
    out = tmp_path / "afg"
    build_corpus(small_config.replace(limit=12), out, progress=False)
    (out / AFS_JSON).write_text("{}")
    (out / AFS_PNG).write_bytes(b"png")
    (out / BENCH_DIR).mkdir()
    (out / BENCH_DIR / "results.json").write_text("{}")
    build_corpus(small_config.replace(limit=12, seed=1), out, progress=False, overwrite=True)
    assert not (out / AFS_JSON).exists() and not (out / AFS_PNG).exists()
    assert not (out / BENCH_DIR).exists()


def test_resume_and_overwrite_together_are_refused_before_writing(small_config, tmp_path):
    with pytest.raises(ConfigError, match="contradict"):
        RunOptions(resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="contradict"):
        build_corpus(small_config, tmp_path / "x", progress=False, resume=True, overwrite=True)
    assert not (tmp_path / "x").exists()


def test_partial_files_in_model_dir_are_never_listed(corpus, tmp_path):
    from afg_datasets.building import finalize

    out = tmp_path / "afg"
    shutil.copytree(corpus.out, out)
    (out / "model" / "model.safetensors.partial").write_bytes(b"half")
    manifest = finalize(out).manifest
    assert not [e for e in manifest["files"] if e["path"].endswith(".partial")]


def test_stream_of_bare_urls_refuses_a_shard_cut_at_a_member_boundary(copy, tmp_path):
    shard = sorted((copy / "wds").glob("*/test-*.tar"))[0]
    whole = sum(1 for _ in stream([str(shard)]))
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    cut = members[len(members) // 2].offset  # a member boundary: tar readers stop silently
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(CorpusError, match="truncated"):
        list(stream([str(truncated)]))
    assert whole > 0


def _shard_with(tmp_path, npy: bytes, png: bytes | None = None):
    """A one-sample shard whose genome member is `npy` (and image member `png`)."""
    path = tmp_path / "hostile.tar"
    meta = {"key": "a", "attack": "clean", "label": 0, "is_adversarial": False}
    members = {"a.json": json.dumps(meta | {"mixed_label": [1, 0]}).encode(), "a.g.npy": npy}
    if png is not None:
        members["a.png"] = png
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return str(path)


def test_hostile_npy_header_is_refused_before_allocating(tmp_path):
    good = io.BytesIO()
    np.save(good, np.zeros((2, 3), dtype=np.float32))
    header = good.getvalue().replace(b"(2, 3)", b"(10000000000000, 3)")
    with pytest.raises(CorpusError, match="shape"):
        list(stream([_shard_with(tmp_path, header)]))
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorpusError, match="dtype"):
        list(stream([_shard_with(tmp_path, objects.getvalue())]))
    (record,) = stream([_shard_with(tmp_path, good.getvalue())])
    assert record["g"].shape == (2, 3) and record["key"] == "a"


def test_member_data_that_looks_like_a_tar_header_is_read_as_data(tmp_path):
    """Headers are found by their ustar magic; a data block carrying the magic breaks the
    chain and the reader walks the headers one by one instead of misreading the shard."""
    npy = io.BytesIO()
    np.save(npy, np.arange(6, dtype=np.float32).reshape(2, 3))
    fake = bytearray(2048)
    fake[257:263] = b"ustar\0"
    fake[124:135] = b"00000000000"
    (record,) = stream([_shard_with(tmp_path, npy.getvalue(), bytes(fake))])
    assert record["key"] == "a" and record["g"].flatten().tolist() == [0, 1, 2, 3, 4, 5]
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w", format=tarfile.USTAR_FORMAT).close()
    assert list(stream([str(empty)])) == [] == list(stream([str(empty)], batch_size=4))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"files": None}, "files"),
        ({"files": [{"path": "x"}]}, "files.0"),
        ({"source": []}, "source"),
    ],
)
def test_malformed_manifest_is_one_error_naming_the_field(copy, change, field):
    rewrite_manifest(copy, lambda m: m.update(change))
    with pytest.raises(CorpusError, match=rf"manifest file: {field}"):
        verify_corpus(copy)
    (copy / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CorpusError, match="top level"):
        load_manifest(copy)


def test_torn_marker_means_the_task_runs_again(small_config, tmp_path):
    out = tmp_path / "afg"
    build_corpus(small_config.replace(limit=12), out, progress=False)
    marker = out / "tasks" / "00000.json"
    marker.write_text(json.dumps({"files": "not a list"}))
    result = build_corpus(small_config.replace(limit=12), out, progress=False)
    assert result.tasks_run == [0] and verify_corpus(out) == []


@pytest.mark.parametrize(
    "data, field",
    [
        ({"seed": "abc"}, "seed"),
        ({"seed": True}, "seed"),
        ({"limit": 2.5}, "limit"),
        ({"sources_per_task": 2.5}, "sources_per_task"),
        ({"source": {"image_size": True}}, "source.image_size"),
        ({"model": {"layers": "block1"}}, "model.layers"),
        ({"genome": {"size": 100000}}, "genome.size"),
        ({"genome": {"groups": 10000}}, "genome.groups"),
        ({"genome": {"image_size": 100000}}, "genome.image_size"),
        ({"genome": {"lr": float("nan")}}, "genome.lr"),
        ({"attacks": {"fgsm": {"eps": "big"}}}, "eps"),
        ({"attacks": {"fgsm": {"eps": float("nan")}}}, "eps"),
        ({"attacks": {"pgd": {"nb_iter": 2.5}}}, "nb_iter"),
        ({"attacks": {"pgd": {"nb_iter": 10**9}}}, "nb_iter"),
        ({"attacks": {"pgd": "strong"}}, "attacks"),
    ],
)
def test_bad_config_values_fail_before_anything_is_written(data, field, tmp_path):
    from afg_datasets.config import BuildConfig

    with pytest.raises(ConfigError, match=field):
        build_corpus(BuildConfig.from_dict(data), tmp_path / "afg", progress=False)
    assert not (tmp_path / "afg").exists()


def test_rank_from_a_bad_environment_is_one_error():
    from afg_datasets.building.options import resolve_ranks

    with pytest.raises(ConfigError, match="RANK='abc'"):
        resolve_ranks(None, None, {"RANK": "abc", "WORLD_SIZE": "2"})


def test_nan_checkpoint_and_non_tensor_entries_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    from afg_datasets.models.storage import read_checkpoint

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ModelError, match="NaN"):
        read_checkpoint(tmp_path / "nan.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match="not a readable"):
        read_checkpoint(tmp_path / "junk.safetensors")
    torch.save({"w": torch.zeros(2), "step": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ModelError, match="not tensors"):
        read_checkpoint(tmp_path / "mixed.pt")


def test_bad_idx_files_and_out_of_range_labels_are_source_errors(tmp_path):
    from afg_datasets.errors import SourceError
    from afg_datasets.sources import load_source, source_config
    from afg_datasets.sources.bundled import read_idx

    (tmp_path / "six").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(SourceError, match="truncated IDX header"):
        read_idx(tmp_path / "six")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 3)
    with pytest.raises(SourceError, match="gzip"):
        read_idx(tmp_path / "bad.gz")
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    write(mnist / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)), compress=False)
    write(mnist / "t10k-labels-idx1-ubyte", np.array([0, 1]), compress=False)
    with pytest.raises(SourceError, match="not N images"):
        load_source(source_config("mnist", root=str(mnist)))
    write(mnist / "t10k-labels-idx1-ubyte", np.array([0, 1, 12]), compress=False)
    with pytest.raises(SourceError, match="labels must be in 0..9"):
        load_source(source_config("mnist", root=str(mnist)))


def test_push_to_a_server_that_never_answers_ends_in_one_line(copy):
    import socket
    import threading
    import time

    from tests.samples import TOKEN, run_cli

    server = socket.create_server(("127.0.0.1", 0))
    held = []  # accepted connections, kept open and never answered

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    env = {"HF_ENDPOINT": url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = run_cli("push", str(copy), "--repo-id", "afg-org/x", "--timeout", "0.5", env=env)
    elapsed = time.monotonic() - start
    server.close()
    assert result.returncode == 2, result.stderr
    assert "Hub request failed" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= RETRY_WARNINGS + 1
    assert held and elapsed < 60
    assert TOKEN not in result.stderr + result.stdout


def test_push_to_a_closed_port_is_one_line(copy):
    import socket

    from tests.samples import TOKEN, run_cli

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": TOKEN}
    result = run_cli("push", str(copy), "--repo-id", "afg-org/x", "--timeout", "2", env=env)
    assert result.returncode == 2 and "Hub request failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_card_plan_and_stats_are_one_error(copy, tmp_path):
    from afg_datasets.building import finalize
    from afg_datasets.publish.card import refresh_card
    from afg_datasets.publish.hub import validate_card

    card = copy / "README.md"
    card.write_text("---\nlicense: [unclosed\n---\n# card\n")
    with pytest.raises(PushError, match="not a parseable dataset card"):
        validate_card(copy)
    (copy / "stats.json").write_text(json.dumps({"records": "many"}))
    with pytest.raises(CorpusError, match="stats file"):
        refresh_card(Corpus.of(copy))
    (copy / "plan.json").write_text(json.dumps({"tasks": 3}))
    with pytest.raises(CorpusError, match="plan file"):
        finalize(copy)


def test_decompression_bomb_is_a_bad_image_under_either_policy(tmp_path):
    import struct
    import zlib

    from PIL import Image

    from afg_datasets.errors import SourceError
    from afg_datasets.sources import load_source, source_config
    from tests.samples import write_folder

    root = write_folder(tmp_path / "folder", corrupt=False)
    small = io.BytesIO()
    Image.new("L", (4, 4)).save(small, format="PNG")
    png = bytearray(small.getvalue())
    header = struct.pack(">II", 50_000, 50_000) + bytes(png[24:29])  # 2.5 G pixels claimed
    png[16:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    (root / "owl" / "bomb.png").write_bytes(bytes(png))
    strict = load_source(source_config("imagefolder", root=str(root), image_size=16))
    with pytest.raises(SourceError, match="bomb.png"):
        strict.read(np.arange(len(strict)))
    lenient = load_source(
        source_config("imagefolder", root=str(root), image_size=16, on_bad_image="skip")
    )
    decoded = lenient.read(np.arange(len(lenient)))
    assert len(decoded.kept) == len(lenient) - 1 and "bomb" in decoded.bad[0][0]


def test_disk_full_mid_task_leaves_no_partial_and_resumes(small_config, tmp_path, monkeypatch):
    import errno

    from afg_datasets.formats.webdataset import TarWriter

    out = tmp_path / "afg"
    original = TarWriter.write
    calls = []

    def full(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, batch)

    monkeypatch.setattr(TarWriter, "write", full)
    cfg = small_config.replace(limit=12)
    with pytest.raises(OSError, match="No space"):
        build_corpus(cfg, out, progress=False)
    assert not list(out.rglob("*.partial")) and not (out / "manifest.json").exists()
    monkeypatch.setattr(TarWriter, "write", original)
    build_corpus(cfg, out, progress=False)
    assert verify_corpus(out) == []


def test_two_builds_racing_into_one_out_share_it(small_config, tmp_path):
    import os
    import subprocess

    import yaml

    config = tmp_path / "race.yaml"
    cfg = small_config.replace(limit=24, sources_per_task=4, attacks={"fgsm": {}})
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "afg"
    command = [sys.executable, "-m", "afg_datasets.cli", "build-shards", str(config)]
    command += ["--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    assert verify_corpus(out) == []
    assert load_manifest(out)["tasks"] == 6
