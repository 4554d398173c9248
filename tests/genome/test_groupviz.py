"""groupviz encoder (batched feature visualization of NMF groups), `afg show`."""

import json
import tarfile

import numpy as np
import pytest
import torch
from datasets import load_dataset
from PIL import Image as PILImage
from typer.testing import CliRunner

from afg_datasets.building import build_corpus
from afg_datasets.cli import app
from afg_datasets.corpus.loader import load
from afg_datasets.genome import EncoderInputs
from afg_datasets.genome.groupmap import GroupMapConfig, GroupMapEncoder
from afg_datasets.genome.groupviz import mosaic, render
from afg_datasets.images import decode_png
from afg_datasets.models import forward_with_taps, load_target_model

runner = CliRunner()
LAYERS = ("block1", "block2", "block3")


@pytest.fixture(scope="module")
def directions(corpus):
    """NMF group directions of two digits at every layer of the corpus's trained model."""
    model = load_target_model(corpus.out)
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    _, acts = forward_with_taps(model, LAYERS, images)
    inputs = EncoderInputs(tuple(LAYERS), tuple(acts[n].shape[1] for n in LAYERS), 0)
    encoder = GroupMapEncoder(GroupMapConfig(groups=4, size=8, nmf_iters=100), inputs)
    return model, encoder.factorize(acts)[2]


def test_each_visualization_raises_its_own_group_objective(directions):
    model, dirs = directions
    images, trace = render(model, LAYERS, dirs, 1, 32, steps=64, lr=0.05, seed=0)
    assert images.shape == (3, 2, 4, 1, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    live = trace[0] > 1e-6  # groups with a non-zero direction
    gain = trace[-1][live] / trace[0][live]
    assert gain.min() >= 2, f"weakest gain over the random start {gain.min():.2f}"
    deepest = (trace[-1] / trace[0].clamp_min(1e-6)).reshape(3, -1)[-1]
    assert deepest.median() >= 3.5
    steps = trace[1:-1]
    assert bool((steps[-8:].mean(0) > steps[:8].mean(0))[live].all()), "objective must rise"


def test_render_is_deterministic_under_its_seed(directions):
    model, dirs = directions
    first, _ = render(model, LAYERS, dirs, 1, 32, steps=3, lr=0.05, seed=7)
    again, _ = render(model, LAYERS, dirs, 1, 32, steps=3, lr=0.05, seed=7)
    other, _ = render(model, LAYERS, dirs, 1, 32, steps=3, lr=0.05, seed=8)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_mosaic_rows_are_layers_columns_are_groups():
    images = np.zeros((1, 2, 3, 1, 4, 4), dtype=np.uint8)
    images[0, 1, 2] = 255
    picture = mosaic(images)[0]
    assert picture.shape == (2 * 5 - 1, 3 * 5 - 1, 1)
    assert (picture[5:9, 10:14] == 255).all() and (picture[:4, :4] == 0).all()


@pytest.fixture(scope="module")
def viz_corpus(tmp_path_factory, small_config):
    cfg = small_config.replace(
        limit=8, attacks={"fgsm": {"eps": 0.2}}, genome__encoder="groupviz", genome__steps=4
    )
    return build_corpus(cfg, tmp_path_factory.mktemp("viz") / "afg", progress=False)


def test_groupviz_corpus_loads_with_visible_mosaics(viz_corpus):
    ds = load_dataset(str(viz_corpus.out), split="train")
    row = ds[0]
    assert isinstance(row["genome_mosaic"], PILImage.Image)
    assert row["genome_mosaic"].size == (4 * 33 - 1, 3 * 33 - 1)
    assert ds.features["genome_images"].dtype == "uint8"  # stored; numpy views read as int64
    images = ds.with_format("numpy")[0]["genome_images"]
    assert images.shape == (3, 4, 1, 32, 32) and 0 <= images.min() < images.max() <= 255
    example = next(iter(load(viz_corpus.out)))
    assert "genome_mosaic" not in example and example["genome_images"].shape == (3, 4, 1, 32, 32)
    tar = sorted((viz_corpus.out / "wds").glob("*/train-*.tar"))[0]
    with tarfile.open(tar) as handle:
        names = handle.getnames()
    assert any(n.endswith(".genome_mosaic.png") for n in names)
    assert any(n.endswith(".genome_images.npy") for n in names)


def test_show_writes_the_side_by_side_figure(viz_corpus, tmp_path):
    out = tmp_path / "show.png"
    key = load_dataset(str(viz_corpus.out), "fgsm", split="train")["key"][-1]
    result = runner.invoke(app, ["show", str(viz_corpus.out), key, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert decode_png(out.read_bytes()).shape[1] > 1000
    missing = runner.invoke(app, ["show", str(viz_corpus.out), "no-such-key"])
    assert missing.exit_code == 2 and "no-such-key" in missing.output


def test_bench_encoder_prints_one_json_object():
    args = ["bench-encoder", "--encoder", "groupviz", "--samples", "1", "--steps", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    viz, nmf = figures["groupviz"], figures["nmf"]
    assert viz["visualizations"] == 12 and viz["steps"] == 2
    # the visualizations it timed did their job: each group's objective grew
    assert viz["objective_gain_median"] > 1
    # batched torch NMF factorizes as well as scikit-learn's at the same iteration count
    assert nmf["factorizations"] == 3 and 0.8 <= nmf["error_ratio"] <= 1.2


def test_the_render_curve_compares_each_setting_with_lucids(monkeypatch):
    """`bench-encoder --curve`: a row per (steps, lr), Lucid's the reference (1.0), the
    encoder's own flagged; more steps at Lucid's rate reach more of its objective."""
    from afg_datasets.perf import encoder_bench

    monkeypatch.setattr(encoder_bench, "LUCID", (24, 0.05))  # the shape, cheaply
    monkeypatch.setattr(encoder_bench, "CURVE", ((2, 0.05), (12, 0.05)))
    args = ["bench-encoder", "--encoder", "groupviz", "--samples", "1", "--steps", "3"]
    result = runner.invoke(app, [*args, "--curve", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["steps"], r["lr"]): r for r in json.loads(result.stdout)["render_curve"]}
    assert rows[(24, 0.05)]["objective_vs_lucid"] == 1.0 and rows[(24, 0.05)]["setting"] == "lucid"
    assert rows[(3, 0.6)]["setting"] == "encoder"  # the digits builder's lr
    assert rows[(2, 0.05)]["objective_vs_lucid"] < rows[(12, 0.05)]["objective_vs_lucid"]
    assert all(r["records_per_s"] > 0 for r in rows.values())
