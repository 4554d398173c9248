"""Batched consumption: `dataloader` (Arrow batches) and batched `stream` across workers."""

from __future__ import annotations

import pytest
import torch

import afg_datasets
from afg_datasets.building import build_corpus


@pytest.fixture(scope="module")
def sharded(small_config, tmp_path_factory):
    """A small corpus with 4 tasks, so each split has several webdataset shards."""
    out = tmp_path_factory.mktemp("sharded") / "afg"
    build_corpus(small_config.replace(sources_per_task=12), out, progress=False)
    return out


def test_dataloader_batches_are_load_records_in_order(sharded):
    records = list(afg_datasets.load(sharded, split="train"))
    batches = list(afg_datasets.dataloader(sharded, split="train", batch_size=7))
    assert [len(b["key"]) for b in batches[:-1]] == [7] * (len(batches) - 1)
    assert [k for b in batches for k in b["key"]] == [r["key"] for r in records]
    for name in ("genome_spatial", "genome_channels", "mixed_label", "label", "is_adversarial"):
        stacked = torch.stack([r[name] for r in records])
        joined = torch.cat([b[name] for b in batches])
        assert joined.dtype == stacked.dtype and torch.equal(joined, stacked), name
    first = [k for b in afg_datasets.dataloader(sharded, shuffle=True, seed=3) for k in b["key"]]
    again = [k for b in afg_datasets.dataloader(sharded, shuffle=True, seed=3) for k in b["key"]]
    assert first == again and sorted(first) == sorted(r["key"] for r in records)
    assert first != [r["key"] for r in records]


def test_batched_stream_over_two_workers_reads_every_record_once(sharded):
    pipeline = afg_datasets.stream(sharded, split="train", batch_size=16)
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=2)
    batches = list(loader)
    keys = [k for b in batches for k in b["key"]]
    assert len(keys) == len(set(keys)), "no record twice"
    assert sorted(keys) == sorted(r["key"] for r in afg_datasets.load(sharded, split="train"))
    assert batches[0]["genome_spatial"].shape[0] <= 16
    assert batches[0]["genome_spatial"].dtype == torch.float32


def test_batched_stream_equals_load_and_fills_batches_across_shards(sharded):
    records = {r["key"]: r for r in afg_datasets.load(sharded, split="train")}
    batches = list(afg_datasets.stream(sharded, split="train", batch_size=50))
    assert [len(b["key"]) for b in batches[:-1]] == [50] * (len(batches) - 1)
    for batch in batches:
        for i, key in enumerate(batch["key"]):
            for name in ("genome_spatial", "genome_channels", "mixed_label", "label"):
                assert torch.equal(batch[name][i], records[key][name]), name
    assert sum(len(b["key"]) for b in batches) == len(records)


def test_a_shard_with_pax_headers_reads_the_same_through_tarfile(sharded, tmp_path):
    """Names past ustar's 100 bytes need pax headers: the general reader gives equal records."""
    import tarfile

    shard = sorted((sharded / "wds").glob("*/train-*.tar"))[0]
    renamed = tmp_path / "pax.tar"
    prefix = "x" * 120 + "-"
    pax = tarfile.PAX_FORMAT
    with tarfile.open(shard) as source, tarfile.open(renamed, "w", format=pax) as out:
        for member in source:
            data = source.extractfile(member)
            member.name = prefix + member.name
            out.addfile(member, data)
    fast = list(afg_datasets.stream([str(shard)]))
    general = list(afg_datasets.stream([str(renamed)]))
    assert len(fast) == len(general) > 0
    for a, b in zip(fast, general, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["genome_spatial"], b["genome_spatial"])


def test_bench_loader_times_every_reader_over_all_records(sharded):
    """`afg bench-loader`: each reader, made once and iterated in turns, counts every record."""
    from afg_datasets.perf.loader_bench import bench_loaders

    results = bench_loaders(sharded, split="train", repeats=2, batch_size=16)
    assert set(results["readers"]) == {
        "datasets_numpy_numeric", "dataloader_numeric", "datasets_numpy_batched",
        "datasets_torch", "dataloader", "stream_batched", "stream_batched_verified", "load",
        "stream",
    }  # fmt: skip
    assert all(r["records_per_s"] > 0 for r in results["readers"].values())
    assert results["stream_batched_over_dataloader"] > 0
