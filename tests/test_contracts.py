"""Contract tests over every registry: each entry keeps the promises the pipeline relies on."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from afg_datasets.attacks import ATTACKS, Attack
from afg_datasets.building import RunOptions, build_corpus
from afg_datasets.building.executors import EXECUTORS
from afg_datasets.errors import ConfigError
from afg_datasets.evaluation.methods import METHODS
from afg_datasets.genome import ENCODERS, GENOME, EncoderInputs, make_encoder
from afg_datasets.models import ARCHITECTURES, TargetModel, forward_with_taps, freeze
from afg_datasets.sources import SOURCES, load_source, source_config
from tests.samples import (
    QUICK,
    mnist_root,
    write_cifar10,
    write_cifar100,
    write_folder,
    write_hf,
    write_wds,
)


def small_source(name: str, root: Path):
    """A small real instance of every registered source (written here, or shared MNIST)."""
    if name == "mnist":
        return source_config("mnist", root=str(mnist_root(root)))
    writers = {
        "cifar10": write_cifar10,
        "cifar100": write_cifar100,
        "imagefolder": lambda r: write_folder(r, corrupt=False),
        "hf": write_hf,
        "wds": write_wds,
    }
    if name in writers:
        writers[name](root)
        return source_config(name, root=str(root), image_size=16)
    return source_config(name)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_contract(name, tmp_path):
    cfg = small_source(name, tmp_path / name)
    # its Config is the source section: its `name` field is its name
    assert cfg.name == name and isinstance(cfg, SOURCES[name].Config)
    source = load_source(cfg)
    n = len(source)
    assert n > 0 and len(source.labels) == n and source.labels.dtype == np.int64
    assert len(set(source.ids)) == n, "ids are unique"
    assert source.labels.min() >= 0 and source.labels.max() < len(source.class_names)
    assert source.channels in (1, 3)
    picked = np.array([n - 1, 0])
    decoded = source.read(picked)  # any items, in the order asked, decoded on demand
    size = source.image_size
    assert decoded.images.dtype == np.uint8
    assert decoded.images.shape == (2, size, size, source.channels), "square, HWC"
    assert decoded.kept.tolist() == picked.tolist() and decoded.bad == ()
    copy = pickle.loads(pickle.dumps(source.reader))  # loader workers get a copy
    assert np.array_equal(copy.read(picked).images, decoded.images)
    head = source.head(2)
    assert head.ids == source.ids[:2] and len(head) == 2
    assert np.array_equal(head.read(np.arange(2)).images, source.read(np.arange(2)).images)
    assert load_source(cfg).ids == source.ids, "ids are stable across loads"


class _RGBNet(nn.Module):
    """A torchvision-style classifier on 3-channel input (conv, BN, pooled head)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_runs_on_rgb_channels_last_input(name):
    torch.manual_seed(0)
    model = freeze(TargetModel(_RGBNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    nhwc = torch.rand(3, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    x = nhwc.permute(0, 3, 1, 2)  # what the build feeds: NHWC pixels viewed as NCHW
    before = x.clone()
    adv = Attack(name, model, 10, QUICK.get(name, {})).run(x, torch.tensor([0, 1, 2]), seed=0)
    assert torch.equal(x, before) and adv.shape == x.shape
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_contract(name, tiny_model, tmp_path):
    layers = ("block1", "block2")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    _, acts = forward_with_taps(tiny_model, layers, x)
    before = {k: v.clone() for k, v in acts.items()}
    channels = tuple(acts[n].shape[1] for n in layers)
    small = {"groups": 2, "size": 4, "nmf_iters": 5, "steps": 2, "fit_images": 2, "nnls_iters": 5}
    # its Config is the genome section: its `encoder` field is its name, its settings its own
    assert ENCODERS[name].Config().encoder == name
    genome = {"encoder": name, **{k: v for k, v in small.items() if k in GENOME.settings(name)}}
    encoder = make_encoder(genome, EncoderInputs(layers, channels, 0, tiny_model, (1, 8)))
    if hasattr(encoder, "fit"):  # a stateful encoder: fitted (on clean train images), saved
        encoder.fit([acts])
        encoder.save_state(tmp_path / "state.safetensors")
    first = encoder.encode(acts, seed=3)
    assert all(torch.equal(acts[k], before[k]) for k in acts), "activations are not modified"
    features = encoder.features()
    assert set(first) == set(features)
    for column, array in first.items():
        shape = getattr(features[column], "shape", None)
        if shape is not None:
            assert array.shape == (2, *shape), column
            assert np.isfinite(array.astype(np.float32)).all(), column
    second = encoder.encode(acts, seed=3)
    assert all(np.array_equal(first[k], second[k]) for k in first), "same seed, same genome"
    if hasattr(encoder, "fit"):  # its saved state makes the same encoder elsewhere
        again = make_encoder(genome, EncoderInputs(layers, channels, 0, tiny_model, (1, 8)))
        again.load_state(tmp_path / "state.safetensors")
        third = again.encode(acts, seed=3)
        assert all(np.array_equal(first[k], third[k]) for k in first)


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_executor_contract_resumes_a_complete_build_without_touching_it(name, corpus, small_config):
    files = corpus.manifest["files"]
    shards = {p: p.stat().st_mtime_ns for p in (corpus.out / "data").rglob("*.parquet")}
    try:
        again = build_corpus(small_config, corpus.out, progress=False, executor=name)
    finally:
        if name == "ray":
            import ray

            ray.shutdown()  # the executor started a local cluster; later tests start their own
    assert again.tasks_run == []
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    assert json.loads((corpus.out / "manifest.json").read_text())["files"] == files


def test_bad_run_options_are_refused_before_anything_is_written(small_config, tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'slurm'"):
        RunOptions(executor="slurm")
    for bad in ({"device": "tpu"}, {"workers": 0}, {"rank": 2, "world_size": 2}, {"workers": True}):
        with pytest.raises(ConfigError):
            build_corpus(small_config, tmp_path / "out", progress=False, **bad)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_contract(name):
    """Every architecture builds a classifier of [B, C, S, S] -> [B, K] logits whose default
    taps are modules of it (what `--model NAME` and the default layers rely on)."""
    entry = ARCHITECTURES[name]
    channels, size = (1, 16) if entry.trainable else (3, 32)
    torch.manual_seed(0)
    net = entry.build(channels, 7, size).eval()
    modules = dict(net.named_modules())
    assert entry.default_layers and all(layer in modules for layer in entry.default_layers)
    with torch.no_grad():
        logits = net(torch.rand(2, channels, size, size))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


@pytest.fixture(scope="module")
def bench_inputs(corpus):
    from afg_datasets.corpus.corpus import Corpus
    from afg_datasets.evaluation.activations import layer_activations
    from afg_datasets.evaluation.methods import BenchInputs
    from afg_datasets.layout import SPLITS
    from afg_datasets.models import load_target_model
    from afg_datasets.recognizer.data import protocol_filter, read_split

    opened = Corpus.open(corpus.out).verify()
    target = load_target_model(corpus.out)
    data = {s: protocol_filter(read_split(opened, s)) for s in SPLITS}
    pooled = {
        s: layer_activations(target, data[s]["image"], opened.layers, pool=True) for s in SPLITS
    }
    return BenchInputs(data, pooled, opened, target, quick=True)


@pytest.mark.parametrize("name", list(METHODS))
def test_bench_method_contract(name, bench_inputs):
    """Every bench method scores every test record: p(adversarial) in [0, 1] with a threshold
    from validation, and/or a recovered class per record; a system that says it can be
    attacked adaptively maps images to one adversarial logit each."""
    torch.manual_seed(0)
    scores = METHODS[name](bench_inputs, 0)
    test = bench_inputs.splits["test"]
    n = len(test["label"])
    assert scores.p_adv is not None or scores.classes is not None
    if scores.p_adv is not None:
        assert scores.p_adv.shape == (n,) and ((scores.p_adv >= 0) & (scores.p_adv <= 1)).all()
        assert scores.threshold is not None and 0 <= scores.threshold <= 1
    if scores.classes is not None:
        assert scores.classes.shape == (n,)
        assert set(np.unique(scores.classes)) <= set(range(bench_inputs.num_classes))
    if scores.system is not None:
        from afg_datasets.models import forward_with_taps

        images = torch.from_numpy(test["image"][:3]).float() / 255
        _, acts = forward_with_taps(bench_inputs.target, bench_inputs.layers, images)
        logit, _ = scores.system(images, acts)
        assert logit.shape == (3,) and torch.isfinite(logit).all()
