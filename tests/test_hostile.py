"""A corpus from a stranger is data, never code: hostile corpora and careless inputs."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from afg_datasets.build import RunOptions, build_corpus
from afg_datasets.errors import ConfigError, CorpusError, ModelError
from afg_datasets.hub import PushError, upload_plan
from afg_datasets.layout import AFS_JSON, AFS_PNG, BENCH_DIR
from afg_datasets.loader import stream
from afg_datasets.models import load_target_model
from afg_datasets.verify import load_manifest, verify_corpus


@pytest.fixture()
def copy(corpus, tmp_path):
    target = tmp_path / "afg"
    shutil.copytree(corpus.out, target)
    return target


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
                {"path": "../secret.txt", "sha256": "0", "bytes": 7, "rows": None},
                {"path": str(secret), "sha256": "0", "bytes": 7, "rows": None},
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
    shard = sorted((copy / "wds" / "train").glob("*.tar"))[0]
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
    plan = {f.path for f in upload_plan(copy, load_manifest(copy))}
    listed = {e["path"] for e in load_manifest(copy)["files"]}
    assert plan == listed | {"README.md", "manifest.json", "stats.json"}
    (copy / AFS_PNG).symlink_to(tmp_path / "secret")
    with pytest.raises(PushError, match="not a regular file"):
        upload_plan(copy, load_manifest(copy))


def test_stream_reads_the_manifest_shards_not_a_glob(copy):
    shards = sorted((copy / "wds" / "test").glob("*.tar"))
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
    from afg_datasets.build import finalize

    out = tmp_path / "afg"
    shutil.copytree(corpus.out, out)
    (out / "model" / "model.safetensors.partial").write_bytes(b"half")
    manifest = finalize(out).manifest
    assert not [e for e in manifest["files"] if e["path"].endswith(".partial")]
