"""`afg encode`: a corpus re-encoded from its stored PNGs, without running an attack."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from afg_datasets.building import build_corpus
from afg_datasets.building import encode as encode_module
from afg_datasets.building.encode import encode_corpus
from afg_datasets.corpus.corpus import Corpus, verify_corpus
from afg_datasets.corpus.manifest import load_manifest
from afg_datasets.errors import CorpusError, OutputDirError
from afg_datasets.images import encode_png
from afg_datasets.layout import sha256_file
from afg_datasets.publish.card import refresh_card
from tests.samples import run_cli


@pytest.fixture(scope="module")
def parent(tmp_path_factory, small_config):
    """Three tasks, several batches per split, two attacks: batch and task seams to keep."""
    cfg = small_config.replace(
        limit=40, sources_per_task=16, batch_size=6, attacks={"fgsm": {}, "pgd": {"nb_iter": 3}}
    )
    return build_corpus(cfg, tmp_path_factory.mktemp("parent") / "afg", progress=False).out


def corpus_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[len(root.parts)] in ("data", "wds", "model")}  # fmt: skip


def test_the_same_settings_reproduce_the_build_byte_for_byte(parent, tmp_path):
    """On what a Hub download holds (no plan.json, no task markers): the same bytes."""
    published = tmp_path / "published"
    shutil.copytree(parent, published, ignore=shutil.ignore_patterns("plan.json", "tasks"))
    result = encode_corpus(Corpus.of(published), tmp_path / "again", {}, progress=False)
    assert corpus_files(result.out) == corpus_files(parent), "re-encoding is the same function"
    manifest = load_manifest(result.out)
    theirs = load_manifest(parent)
    assert manifest["parent"] == {
        "name": theirs["name"],
        "config_hash": theirs["config_hash"],
        "manifest_sha256": sha256_file(published / "manifest.json"),
    }
    assert manifest["splits"] == theirs["splits"] and verify_corpus(result.out) == []


def test_another_setting_keeps_records_keys_and_splits(parent, tmp_path):
    result = encode_corpus(
        Corpus.of(parent), tmp_path / "g2", {"groups": 2, "size": 4}, progress=False
    )
    manifest, theirs = load_manifest(result.out), load_manifest(parent)
    assert manifest["config_hash"] != theirs["config_hash"]
    assert manifest["config"]["genome"]["groups"] == 2 and manifest["splits"] == theirs["splits"]
    assert verify_corpus(result.out) == []
    for entry in theirs["files"]:
        if entry["path"].endswith(".parquet"):
            ours = pq.read_table(result.out / entry["path"])
            old = pq.read_table(parent / entry["path"])
            for column in ("key", "source_id", "image", "label", "pred", "linf", "l2"):
                assert ours.column(column).equals(old.column(column)), column
    assert (result.out / "model").is_dir()
    test = load_dataset(str(result.out), split="test")
    assert len(test) == theirs["splits"]["test"]["records"]
    assert test.features["genome_spatial"].shape[1:] == (2, 4, 4)


def test_a_killed_encode_resumes_to_the_same_bytes(parent, tmp_path, monkeypatch):
    reference = encode_corpus(
        Corpus.of(parent), tmp_path / "ref", {"groups": 3}, progress=False
    ).out
    original, calls = encode_module._run_task, []

    def dies_on_the_second_task(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(encode_module, "_run_task", dies_on_the_second_task)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(Corpus.of(parent), out, {"groups": 3}, progress=False)
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.partial"))
    monkeypatch.setattr(encode_module, "_run_task", original)
    encode_corpus(Corpus.of(parent), out, {"groups": 3}, progress=False)
    assert corpus_files(out) == corpus_files(reference)


def test_bad_inputs_are_one_line_exit_2_and_write_nothing_complete(parent, corpus, tmp_path):
    cases = [
        (["--encoder", "nope"], "nope"),
        (["--set", "groups=0"], "groups"),
        (["--groups", "2"], "--groups"),  # encoder settings go through --set only
    ]
    for args, named in cases:
        result = run_cli("encode", str(parent), "--out", str(tmp_path / "x"), *args)
        assert result.returncode == 2 and named in result.stderr + result.stdout
    damaged = tmp_path / "damaged"
    shutil.copytree(parent, damaged)
    shard = next((damaged / "data" / "fgsm").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10])
    result = run_cli("encode", str(damaged), "--out", str(tmp_path / "y"))
    assert result.returncode == 2 and "failed verification" in result.stderr
    assert not (tmp_path / "y").exists()
    result = run_cli("encode", str(parent), "--out", str(corpus.out), "--set", "groups=2")
    assert result.returncode == 2 and "different corpus" in result.stderr
    with pytest.raises(OutputDirError, match="is the corpus itself"):
        encode_corpus(Corpus.of(parent), parent, {})
    with pytest.raises(CorpusError, match="missing"):
        encode_corpus(Corpus.open(tmp_path / "nothing"), tmp_path / "z", {})


def test_the_genome_bench_compares_genomes_on_the_same_test_sources(parent, corpus, tmp_path):
    from afg_datasets.evaluation.genomes import run_genome_bench
    from afg_datasets.evaluation.show import show

    other = encode_corpus(
        Corpus.of(parent), tmp_path / "act", {"encoder": "activations"}, progress=False
    )
    card = (other.out / "README.md").read_text()  # the card describes its own genome
    assert "activations average-pooled to" in card and "NMF groups per layer" not in card
    report = run_genome_bench(
        [Corpus.of(parent), Corpus.of(other.out)],
        tmp_path / "bench",
        quick=True,
        unseen="none",
        attack_systems=True,
    )
    labels = [g["label"] for g in report["genomes"]]
    sizes = [g["parameters"] for g in report["genomes"]]  # each genome's own, not the first's
    assert sizes[0]["afg"] != sizes[1]["afg"] and all(s["raw_pixels"] > 0 for s in sizes)
    assert any("training seed" in w for w in report["warnings"]) and report["versions"]["torch"]
    assert labels == ["groupmap", "activations"]
    methods = {r["method"] for r in report["results"]}
    assert methods == {"afg:groupmap", "raw_pixels:groupmap", "afg:activations"} | {
        "raw_pixels:activations", "mahalanobis", "lid", "target_model"
    }  # fmt: skip
    for attack in ("fgsm", "pgd", "overall"):  # every method scored the same test records
        assert len({r["n"] for r in report["results"] if r["attack"] == attack}) == 1
    pairs = {(c["first"], c["versus"]) for c in report["comparisons"]}
    assert pairs == {
        ("afg:groupmap", "raw_pixels:groupmap"), ("afg:groupmap", "mahalanobis"),
        ("afg:activations", "raw_pixels:activations"), ("afg:activations", "mahalanobis"),
    }  # fmt: skip
    # the adaptive attacker goes through each genome's own encoder, on the same sources
    adaptive = [r for r in report["adaptive"]["rows"] if r["mode"] == "adaptive"]
    attacked = {r["method"] for r in adaptive}
    assert {"afg:groupmap", "afg:activations", "raw_pixels:groupmap"} <= attacked
    for attack in {r["attack"] for r in adaptive}:
        assert len({r["n"] for r in adaptive if r["attack"] == attack}) == 1
    assert (tmp_path / "bench" / "results.md").read_text().count("afg:activations") > 0
    key = next(k for k in pq.read_table(first(other.out, "data/pgd/*"))["key"].to_pylist())
    for root in (parent, other.out):  # every encoder's genome is drawn
        assert show(Corpus.of(root), key, tmp_path / f"{root.name}.png").stat().st_size > 0
    with pytest.raises(CorpusError, match="different attacks"):
        run_genome_bench(
            [Corpus.of(parent), Corpus.of(corpus.out)], tmp_path / "no", quick=True, unseen="none"
        )


def first(root, pattern):
    return sorted(root.glob(pattern))[0]


def with_manifest(root, change):
    """`root` with its manifest changed by `change(manifest)`, its card and croissant.json
    made again: an intact corpus (verify passes)."""
    manifest = load_manifest(root)
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    refresh_card(Corpus.of(root))
    return root


def test_an_encode_trusts_only_the_parent_it_verified(parent, tmp_path):
    out = tmp_path / "enc"
    encode_corpus(Corpus.of(parent), out, {"groups": 3}, progress=False)
    rebuilt = tmp_path / "rebuilt"  # same name and config hash, another build (another corpus)
    shutil.copytree(parent, rebuilt)
    with_manifest(rebuilt, lambda m: m.update(package_version="0.5.0"))
    with pytest.raises(OutputDirError, match="re-encodes another corpus"):
        encode_corpus(Corpus.of(rebuilt), out, {"groups": 3}, progress=False)
    with pytest.raises(OutputDirError, match="inside the corpus"):
        encode_corpus(Corpus.of(parent), parent / "inside", {"groups": 3}, progress=False)
    assert not (parent / "inside").exists()


def test_stored_images_are_checked_against_the_corpus_shape(parent, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(parent, damaged)
    shard = first(damaged, "data/clean/train-*.parquet")
    source = pq.ParquetFile(shard)
    groups = [source.read_row_group(i) for i in range(source.metadata.num_row_groups)]
    images = groups[0].column("image").to_pylist()
    images[0] = {"bytes": encode_png(np.zeros((7, 9, 1), np.uint8)), "path": None}
    field = groups[0].schema.field("image")
    column = pa.array(images, field.type)
    groups[0] = groups[0].set_column(groups[0].schema.get_field_index("image"), field, column)
    with pq.ParquetWriter(shard, groups[0].schema) as writer:  # the build's row groups kept
        for group in groups:
            writer.write_table(group)
    relative = shard.relative_to(damaged).as_posix()

    def rehash(manifest):
        entry = next(e for e in manifest["files"] if e["path"] == relative)
        entry.update(sha256=sha256_file(shard), bytes=shard.stat().st_size)

    with_manifest(damaged, rehash)
    with pytest.raises(CorpusError, match="parquet: a stored image of 9x7 px"):
        encode_corpus(Corpus.of(damaged), tmp_path / "x", {"groups": 3}, progress=False)


def test_the_task_count_comes_from_the_manifest(parent, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(parent, renamed)
    with_manifest(renamed, lambda m: m.update(tasks=m["tasks"] + 1))
    with pytest.raises(CorpusError, match="tasks"):
        encode_corpus(Corpus.of(renamed), tmp_path / "x", {"groups": 3}, progress=False)
