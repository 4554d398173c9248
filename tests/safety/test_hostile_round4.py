"""Trust, round 4: each rule in one place, guarded where its class can occur, fuzzed."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from afg_datasets.building import build_corpus, threads
from afg_datasets.checks import hub_repo_id, hub_revision
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.tarshards import shard_members
from afg_datasets.documents import load_json, read_bytes
from afg_datasets.errors import ConfigError, CorpusError, OutputDirError, SourceError
from afg_datasets.evaluation.protocol import check_benchable
from afg_datasets.files import foreign_entry
from afg_datasets.images import decode_png
from afg_datasets.layout import OUTPUT_DIRS, OUTPUTS
from afg_datasets.sources.folders import FileReader
from tests.samples import PACKAGE, run_cli

# Calls that open or parse a file, and the modules that own each (the rule's one place) with
# why. Anything else opening a user's file must go through `documents` (regular, bounded,
# shape-checked) or `layout.read_json`.
FILE_CALLS = {"open", "os.open", "Image.open", "tarfile.open", "json.load", "yaml.safe_load"}
OWNERS = {
    "documents.py": "the rule: regular files, bounded, JSON/YAML shape",
    "files.py": "whole-or-nothing writes, never through a link",
    "images.py": "PNG bytes already in memory",
    "sources/base.py": "image bytes already in memory (open_bytes)",
    "building/threads.py": "its own registry entries, O_NOFOLLOW",
    "layout.py": "hashing a corpus file the manifest names (regular_file checked first)",
    "formats/webdataset.py": "the shards it writes",
}
READERS = {"read_text", "read_bytes"}
FILES = [
    name for name in OUTPUTS if name not in OUTPUT_DIRS
]  # pathlib's, unbounded: only `documents` may call them


def file_calls() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg for k in node.keywords}
            if name == "tarfile.open" and "fileobj" in keywords:
                continue  # opened by open_regular first
            method = isinstance(node.func, ast.Attribute) and node.func.attr in READERS
            if name in FILE_CALLS or method:
                found.append((module, node.lineno, name))
    return found


def test_every_file_is_opened_where_its_rule_lives():
    stray = [f"{m}:{line} {name}" for m, line, name in file_calls() if m not in OWNERS]
    assert not stray, f"open user files through afg_datasets.documents: {stray}"
    assert {m for m, _, _ in file_calls()} <= set(OWNERS)


@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "cat" / "x.png"
    path.parent.mkdir()
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_not_read(fifo, tmp_path):
    reader = FileReader(tmp_path, ("cat/x.png",), ("x",), 8, None)
    with pytest.raises(SourceError, match="pipe, socket or device"):
        reader.open_item(0)
    decoded = reader.read([0])  # a bad image, as source.on_bad_image handles it
    assert len(decoded.kept) == 0 and "pipe, socket or device" in decoded.bad[0][1]
    with pytest.raises(CorpusError, match="not a regular file"):
        read_bytes(fifo.parent, CorpusError)


@pytest.mark.parametrize(
    "text, top, found",
    [("5", list, "an integer"), ("[1]", dict, "a list"), ("null", dict, "null"),
     ('"x"', dict, "a string"), ("true", list, "bool"), ("{}", list, "an object")],
)  # fmt: skip
def test_a_json_document_of_the_wrong_type_is_one_line(tmp_path, text, top, found):
    path = tmp_path / "classes.json"
    path.write_text(text)
    with pytest.raises(SourceError, match=found):
        load_json(path, SourceError, top=top)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(JSON)
def test_any_json_document_loads_as_an_object_or_is_one_error(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("j") / "d.json"
    path.write_text(json.dumps(value))
    try:
        assert isinstance(load_json(path, CorpusError), dict)
    except CorpusError as err:
        assert str(path) in str(err) and "\n" not in str(err)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40))
def test_any_repo_id_is_valid_or_one_config_error(text):
    try:
        assert hub_repo_id(text) == text and text.count("/") == 1
    except ConfigError as err:
        assert "\n" not in str(err)
    try:
        assert hub_revision(text) == text
    except ConfigError as err:
        assert "--revision" in str(err)


def test_identifiers_are_checked_before_any_work(copy):
    for args, named in [
        (["--repo-id", "afg org/digits"], "afg org/digits"),
        (["--repo-id", "a/b", "--revision", "bad branch"], "bad branch"),
    ]:
        result = run_cli("push", str(copy), *args, "--dry-run", env={"HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2 and named in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_foreign_entries_in_the_build_registry_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path))
    running = threads.registry()
    (running / "3").mkdir(parents=True)  # a folder named like a pid, perhaps of no process
    (running / "999999998").mkdir()
    (running / "999999997").symlink_to(tmp_path / "elsewhere")
    with threads.registered(2):
        assert threads.node_processes() == 2
    assert (running / "3").is_dir() and (running / "999999998").is_dir(), "not ours: kept"


def test_a_planted_link_or_file_under_out_stops_a_resume_before_writing(
    copy, small_config, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(copy / "data", elsewhere)
    (copy / "data").symlink_to(elsewhere)
    (copy / "tasks" / "00000.json").unlink()  # task 0 would be written again
    before = sorted(p.name for p in elsewhere.rglob("*"))
    with pytest.raises(OutputDirError, match="symbolic link"):
        build_corpus(small_config, copy, progress=False)
    assert sorted(p.name for p in elsewhere.rglob("*")) == before
    (copy / "data").unlink()
    (copy / "data").write_text("not a folder")
    with pytest.raises(OutputDirError, match="where the build writes its own data"):
        build_corpus(small_config, copy, progress=False)
    shutil.rmtree(copy / "tasks")
    (copy / "tasks").mkdir()
    (copy / "tasks" / "00000.lock").symlink_to(tmp_path / "victim")
    (copy / "data").unlink()
    with pytest.raises(OutputDirError, match="symbolic link inside the build's tasks/"):
        build_corpus(small_config, copy, progress=False)
    assert not (tmp_path / "victim").exists()


def shard_end(raw: bytes) -> bytes:
    """A tar's bytes up to and with its two end-of-archive blocks (no record padding)."""
    end = len(raw.rstrip(b"\0"))
    end = -(-end // 512) * 512
    return raw[:end] + b"\0" * 1024


@pytest.mark.parametrize("blocking", [1, 20, 40, 64, 256])
def test_tar_padding_of_any_blocking_factor_reads(corpus, blocking):
    raw = shard_end(next((corpus.out / "wds").glob("*/train-*.tar")).read_bytes())
    record = blocking * 512
    padded = raw + b"\0" * (-len(raw) % record)
    assert shard_members(padded, "x.tar")[1][0] > 0


def test_gnu_tar_with_blocking_40_reads(corpus, tmp_path):
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("no tar here")
    shard = next((corpus.out / "wds").glob("*/train-*.tar"))
    members = tmp_path / "m"
    members.mkdir()
    subprocess.run([tar, "-xf", str(shard), "-C", str(members)], check=True)
    names = sorted(p.name for p in members.iterdir())
    out = tmp_path / "b40.tar"
    subprocess.run([tar, "-b", "40", "--format=ustar", "-cf", str(out), "-C", str(members), *names],
                   check=True)  # fmt: skip
    assert len(out.read_bytes()) % (40 * 512) == 0
    assert shard_members(out.read_bytes(), str(out))[1][0] == len({n.split(".")[0] for n in names})


@pytest.mark.parametrize("extra", [257 * 512, 4096 * 512])
def test_a_zero_filled_tail_longer_than_any_record_is_refused(corpus, extra):
    raw = shard_end(next((corpus.out / "wds").glob("*/train-*.tar")).read_bytes())
    with pytest.raises(CorpusError, match="zero-filled"):
        shard_members(raw + b"\0" * extra, "x.tar")


def test_the_bench_checks_the_manifest_before_reading(corpus):
    manifest = json.loads((corpus.out / "manifest.json").read_text())
    check_benchable(Corpus(corpus.out, manifest))
    small = {**manifest, "splits": {**manifest["splits"], "test": {"sources": 1, "records": 4}}}
    with pytest.raises(CorpusError, match="test split holds 1 source"):
        check_benchable(Corpus(corpus.out, small))
    with pytest.raises(CorpusError, match="without attacks"):
        check_benchable(Corpus(corpus.out, {**manifest, "attacks": {}}))


ENTRY_KINDS = ("link", "fifo", "file_for_folder", "folder_for_file")


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(ENTRY_KINDS),
    st.sampled_from(OUTPUT_DIRS),
    st.sampled_from(FILES),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
)
def test_any_entry_a_build_did_not_make_is_found(tmp_path_factory, kind, folder, file, depth):
    out = tmp_path_factory.mktemp("out")
    where = out.joinpath(folder, *depth)
    where.mkdir(parents=True)
    (where / "ok.parquet").write_bytes(b"x")
    planted = {
        "link": where / "x",
        "fifo": where / "y",
        "file_for_folder": out / folder,
        "folder_for_file": out / file,
    }[kind]
    if kind == "link":
        planted.symlink_to(out)
    elif kind == "fifo":
        os.mkfifo(planted)
    elif kind == "file_for_folder":
        shutil.rmtree(planted)
        planted.write_bytes(b"")
    else:
        planted.mkdir()
    found = foreign_entry(out, OUTPUT_DIRS, FILES)
    assert found is not None and found.startswith(str(planted)), found


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "I", "F", "1", "LA"]),
    st.integers(1, 12),
    st.integers(1, 12),
    st.sampled_from([1, 3]),
)
def test_any_stored_image_decodes_to_the_corpus_shape_or_is_a_value_error(mode, w, h, channels):
    buffer = io.BytesIO()
    Image.new(mode, (w, h)).save(buffer, format="PNG" if mode not in ("I", "F") else "TIFF")
    shape = (8, 8, channels)
    try:
        assert decode_png(buffer.getvalue(), shape).shape == shape
    except ValueError as err:
        assert "px" in str(err) or "mode" in str(err)


def test_a_lock_file_that_is_a_link_is_refused(tmp_path):
    from afg_datasets.building.plan import output_lock

    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".afg.lock").symlink_to(victim)
    with pytest.raises(OutputDirError, match="symbolic link"), output_lock(out):
        pass
    assert victim.read_text() == "keep"


@pytest.mark.parametrize("entry", ["file", "corrupt"])
def test_a_damaged_model_cache_entry_never_stops_a_build(
    small_config, tmp_path, monkeypatch, entry
):
    from afg_datasets.building.context import model_cache_key
    from afg_datasets.models.storage import cached_model_dir

    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path / "cache"))
    cfg = small_config.replace(limit=12, model__epochs=1)  # trained again: quickly
    cached = cached_model_dir(model_cache_key(cfg))
    cached.parent.mkdir(parents=True)
    if entry == "file":
        cached.write_text("not a folder")
    else:
        cached.mkdir()
        (cached / "model.json").write_text("{}")
    result = build_corpus(cfg, tmp_path / "out", progress=False)
    assert result.manifest and (tmp_path / "out" / "model" / "model.safetensors").is_file()
