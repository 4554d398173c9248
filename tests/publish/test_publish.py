"""Publish and consume: card, verify, push (loopback Hub), offline load, loader and stream."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import DatasetCard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import afg_datasets
from afg_datasets.corpus.corpus import Corpus, verify_corpus
from afg_datasets.errors import CorpusError
from afg_datasets.publish.hub import upload_plan
from tests.fake_hub import FakeHub
from tests.samples import TOKEN, run_cli


def test_card_metadata_parses(corpus):
    card = DatasetCard.load(corpus.out / "README.md")
    data = card.data.to_dict()
    for key in (
        "pretty_name",
        "license",
        "task_categories",
        "tags",
        "size_categories",
        "source_datasets",
        "configs",
        "dataset_info",
    ):
        assert data.get(key), key
    assert data["size_categories"] == ["n<1K"]
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert infos["all"]["splits"][0]["num_examples"] > 0
    assert data["source_datasets"] == ["original"] and data["task_ids"]
    parquet = sum(e["bytes"] for e in corpus.manifest["files"] if e["path"].endswith(".parquet"))
    assert infos["all"]["download_size"] == parquet, "download_size: the parquet bytes"
    arrow = sum(split["num_bytes"] for split in infos["all"]["splits"])
    assert infos["all"]["dataset_size"] == arrow != parquet, "num_bytes: uncompressed Arrow"
    assert "Record schema" in card.text and "chen2022afg" in card.text


def test_size_category_counts_each_record_once(corpus):
    from afg_datasets.publish.card import card_data

    manifest = json.loads((corpus.out / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"].startswith("wds/"):
            entry["rows"] = 5_000  # the webdataset copy must not count again
    from afg_datasets.corpus.corpus import Corpus

    assert card_data(Corpus(corpus.out, manifest)).size_categories == ["n<1K"]


def test_card_command_regenerates_identically(copy):
    before = (copy / "README.md").read_text()
    figure = (copy / "examples.png").read_bytes()
    (copy / "README.md").unlink()
    (copy / "examples.png").unlink()
    result = run_cli("card", str(copy))
    assert result.returncode == 0, result.stderr
    assert (copy / "README.md").read_text() == before
    assert (copy / "examples.png").read_bytes() == figure, "the same corpus, the same PNG"


def test_the_card_opens_with_a_clean_adversarial_pair_per_attack(corpus):
    """examples.png (format 1.5): a row per attack of clean | adversarial | perturbation,
    the stored images themselves (enlarged by a whole factor), mid-grey where nothing changed."""
    import numpy as np

    from afg_datasets.images import decode_png
    from afg_datasets.publish.examples import GAP, example_keys

    opened = Corpus.open(corpus.out)
    keys = example_keys(opened)
    assert list(keys) == opened.attacks, "every attack of the small corpus succeeds somewhere"
    mosaic = decode_png((corpus.out / "examples.png").read_bytes())
    side = (mosaic.shape[1] + GAP) // 3 - GAP
    assert mosaic.shape[0] == len(keys) * (side + GAP) - GAP
    for row, (clean_key, adversarial_key) in enumerate(keys.values()):
        clean, adversarial = (
            decode_png(opened.find(k)["image"]["bytes"]) for k in (clean_key, adversarial_key)
        )
        scale = side // clean.shape[0]
        top = row * (side + GAP)
        tiles = [
            mosaic[top : top + side, c * (side + GAP) : c * (side + GAP) + side] for c in range(3)
        ]
        assert np.array_equal(tiles[0][::scale, ::scale], clean)
        assert np.array_equal(tiles[1][::scale, ::scale], adversarial)
        unchanged = (clean == adversarial).all(-1)
        assert (tiles[2][::scale, ::scale][unchanged] == 128).all() and not unchanged.all()
    card = (corpus.out / "README.md").read_text()
    assert "](examples.png)" in card and card.index("examples.png") < card.index("Record schema")


def test_verify_ok(corpus):
    assert verify_corpus(corpus.out) == []
    result = run_cli("verify", str(corpus.out))
    assert result.returncode == 0 and "OK" in result.stdout


def first(copy, pattern):
    return sorted(copy.glob(pattern))[0]


def test_verify_catches_flipped_byte(copy):
    shard = first(copy, "wds/*/train-*.tar")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run_cli("verify", str(copy))
    assert result.returncode == 1
    assert f"{shard.relative_to(copy).as_posix()}: sha256" in result.stdout


def test_verify_catches_deleted_shard(copy):
    shard = first(copy, "data/pgd/*.parquet")
    shard.unlink()
    problems = verify_corpus(copy)
    assert problems == [f"{shard.relative_to(copy).as_posix()}: missing"]


def test_verify_catches_extra_row(copy):
    shard = first(copy, "data/clean/train-*.parquet")
    table = pq.read_table(shard)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), shard)
    problems = verify_corpus(copy)
    name = shard.relative_to(copy).as_posix()
    # the size already differs: verify says so and does not hash the file
    assert any(p.startswith(f"{name}: ") and "manifest says" in p for p in problems)
    assert any("appears 2 times" in p for p in verify_corpus_rows_only(copy, shard))


def verify_corpus_rows_only(copy, shard):
    """The record checks alone (what a re-hashed, tampered manifest would still catch)."""
    from afg_datasets.corpus.corpus import Corpus
    from afg_datasets.corpus.verify import check_records

    return check_records(copy, Corpus.open(copy).files("parquet"))


def test_push_through_loopback_hub(copy, tmp_path):
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        result = run_cli("push", str(copy), "--repo-id", "afg-org/digits", env=env)
        assert result.returncode == 0, result.stderr
        again = run_cli(
            "push", str(copy), "--repo-id", "afg-org/digits", "--revision", "v1", env=env
        )
        assert again.returncode == 0, again.stderr
    for output in (result.stdout, result.stderr, again.stdout, again.stderr):
        assert TOKEN not in output
    assert hub.tokens == {TOKEN}
    assert hub.repos["afg-org/digits"]["type"] == "dataset"
    for revision in ("main", "v1"):
        uploaded = hub.files[("afg-org/digits", revision)]
        expected = {f.path for f in upload_plan(Corpus.open(copy))}
        assert set(uploaded) == expected
        for path in expected - {"README.md", "croissant.json"}:
            assert uploaded[path] == (copy / path).read_bytes(), path
        card = uploaded["README.md"].decode()
        assert 'load_dataset("afg-org/digits")' in card and "snapshot_download" in card
    assert "plan.json" not in hub.files[("afg-org/digits", "main")]
    assert "examples.png" in hub.files[("afg-org/digits", "main")], "the card's figure goes too"
    assert hub.validated and hub.validated[0]["task_categories"] == ["image-classification"]


def test_push_dry_run_lists_files_and_refuses_bad_corpus(copy):
    result = run_cli(
        "push", str(copy), "--repo-id", "afg-org/digits", "--dry-run", env={"HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "manifest.json" in result.stdout and "dry run" in result.stdout
    first(copy, "data/fgsm/*.parquet").unlink()
    refused = run_cli("push", str(copy), "--repo-id", "afg-org/digits", "--dry-run")
    assert refused.returncode == 2 and "failed verification" in refused.stderr


OFFLINE_LOAD = """
import sys
from datasets import load_dataset
path, config = sys.argv[1], sys.argv[2]
ds = load_dataset(path, config, split="test")
streamed = load_dataset(path, config, split="test", streaming=True)
keys = [row["key"] for row in streamed]
assert keys == ds["key"], "streaming and map-style disagree"
print(len(ds), sorted(set(ds["attack"])))
"""


def test_offline_load_and_streaming_resolve_like_the_hub(corpus):
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, str(corpus.out), "cw_l2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "['clean', 'cw_l2']" in result.stdout


def test_load_and_stream_yield_the_same_examples(corpus):
    loaded = {e["key"]: e for e in afg_datasets.load(corpus.out, split="test")}
    streamed = {e["key"]: e for e in afg_datasets.stream(corpus.out, split="test")}
    assert loaded.keys() == streamed.keys() and loaded
    for key, example in loaded.items():
        other = streamed[key]
        assert torch.equal(example["genome_spatial"], other["genome_spatial"])
        assert torch.equal(example["mixed_label"], other["mixed_label"])
        assert int(example["label"]) == int(other["label"])
        assert bool(example["is_adversarial"]) == (example["attack"] != "clean")
    item = afg_datasets.load(corpus.out, split="test")[0]
    assert item["genome_channels"].dtype == torch.float32


def test_loader_verify_refuses_tampered_corpus(copy):
    shard = first(copy, "data/clean/test-*.parquet")
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CorpusError, match=shard.name):
        afg_datasets.load(copy, split="test")


@pytest.fixture(scope="module")
def fuzz_copy(corpus, tmp_path_factory):
    target = tmp_path_factory.mktemp("fuzz") / "afg"
    shutil.copytree(corpus.out, target)
    return target


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    mode=st.sampled_from(["truncate", "flip", "zero"]),
    which=st.sampled_from(["wds/*/test-*.tar", "data/pgd/test-*.parquet"]),
)
def test_corrupt_shards_always_give_a_clean_error(fuzz_copy, data, mode, which):
    shard = first(fuzz_copy, which)
    original = shard.read_bytes()
    cut = data.draw(st.integers(0, len(original) - 1), label="offset")
    damaged = bytearray(original)
    if mode == "truncate":
        damaged = damaged[:cut]
    elif mode == "flip":
        damaged[cut] ^= 1 + data.draw(st.integers(0, 254), label="bits")
    else:
        damaged[cut : cut + 512] = bytes(len(damaged[cut : cut + 512]))
    if bytes(damaged) == original:
        return
    shard.write_bytes(bytes(damaged))
    try:
        reader = (
            (lambda: list(afg_datasets.stream(fuzz_copy, split="test")))
            if which.startswith("wds")
            else (lambda: afg_datasets.load(fuzz_copy, split="test"))
        )
        with pytest.raises(CorpusError, match=shard.name):
            reader()
    finally:
        shard.write_bytes(original)


@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("AFG_TEST_REPO")),
    reason="live Hub test: set HF_TOKEN and AFG_TEST_REPO to run it",
)
def test_live_push_and_load(corpus):
    repo = os.environ["AFG_TEST_REPO"]
    result = run_cli("push", str(corpus.out), "--repo-id", repo, "--private")
    assert result.returncode == 0, result.stderr
    assert os.environ["HF_TOKEN"] not in result.stdout + result.stderr
    from datasets import load_dataset

    assert len(load_dataset(repo, "all", split="test")) > 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_bare_url_stream_is_whole_or_a_clean_error(fuzz_copy, tmp_path_factory, data):
    """Without a manifest, a damaged shard gives every record or a CorpusError: never a
    silently short stream, never another exception."""
    shard = first(fuzz_copy, "wds/*/test-*.tar")
    original = shard.read_bytes()
    whole = len(list(afg_datasets.stream([str(shard)])))
    cut = data.draw(st.integers(0, len(original) - 1), label="cut")
    damaged = tmp_path_factory.mktemp("cut") / "shard.tar"
    damaged.write_bytes(original[:cut])
    try:
        count = len(list(afg_datasets.stream([str(damaged)])))
    except CorpusError:
        return
    assert count == whole, f"cut at {cut} of {len(original)} gave {count} of {whole} records"


CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)


def config_dicts():
    from afg_datasets.config import BuildConfig, ModelConfig
    from afg_datasets.genome import GENOME
    from afg_datasets.sources import SOURCE

    def section(names):
        names = [*names, "unknown_key"]
        return st.dictionaries(st.sampled_from(names), CONFIG_VALUES, max_size=3)

    def names_of(cls):
        return [f.name for f in dataclasses.fields(cls)]

    def chosen(choice):
        """Any entry's settings under any (or no) entry name: a mismatch is one error too."""
        keys = sorted({key for name in choice.registry for key in choice.settings(name)})
        return st.one_of(
            section(keys),
            st.builds(
                lambda name, rest: {**rest, choice.key: name},
                st.sampled_from([*choice.registry, "nope"]),
                section(keys),
            ),
        )

    top = names_of(BuildConfig)
    nested = {
        "source": chosen(SOURCE),
        "genome": chosen(GENOME),
        "model": section(names_of(ModelConfig)),
    }
    nested["attacks"] = st.dictionaries(
        st.sampled_from(["fgsm", "pgd", "cw_l2", "nope"]),
        st.one_of(
            CONFIG_VALUES, st.dictionaries(st.sampled_from(["eps", "nb_iter"]), CONFIG_VALUES)
        ),
        max_size=2,
    )
    return st.fixed_dictionaries({}, optional={k: nested.get(k, CONFIG_VALUES) for k in top})


@settings(max_examples=150, deadline=None)
@given(data=config_dicts())
def test_any_config_is_valid_or_one_config_error(data):
    from afg_datasets.config import BuildConfig
    from afg_datasets.errors import ConfigError

    try:
        cfg = BuildConfig.from_dict(data)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert BuildConfig.from_dict(cfg.to_dict()).config_hash() == cfg.config_hash()
