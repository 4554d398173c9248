"""Source registry: real loaders on real (MNIST) or test-written data, and their bad inputs."""

import logging
import pickle

import numpy as np
import pytest
from PIL import Image

from afg_datasets.errors import SourceError
from afg_datasets.sources import SOURCES, bundled, load_source, source_config
from afg_datasets.sources.bundled import read_idx
from tests.samples import (
    MNIST,
    mnist_root,
    needs_mnist,
    write_cifar10,
    write_folder,
    write_idx,
    write_wds,
)


def pixels(source) -> np.ndarray:
    """Every image of a source, decoded (the bad-image policy applied)."""
    return source.read(np.arange(len(source))).images


def test_registry_lists_all_sources():
    assert {"digits", "mnist", "cifar10", "cifar100", "imagefolder", "hf", "wds"} <= set(SOURCES)


@needs_mnist
def test_mnist_test_set_is_the_whole_source_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        source = load_source(source_config("mnist", root=str(MNIST), image_size=28))
    assert "only the 10,000-image test set" in caplog.text
    images = pixels(source)
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(source.labels).tolist()[:3] == [980, 1135, 1032]
    assert len(set(source.ids)) == 10_000 and source.ids[0] == "mnist-t10k-00000"


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_gzip_or_plain_train_then_test(tmp_path, compress):
    suffix = ".gz" if compress else ""
    for part, n in (("train", 3), ("t10k", 2)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte{suffix}", np.full((n, 28, 28), n), compress)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte{suffix}", np.arange(n), compress)
    source = load_source(source_config("mnist", root=str(tmp_path), image_size=28))
    assert source.labels.tolist() == [0, 1, 2, 0, 1]
    assert source.ids[0] == "mnist-train-00000" and source.ids[-1] == "mnist-t10k-00001"


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 4, 4)), compress=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SourceError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagefolder"])
def test_missing_root_and_wrong_layout(tmp_path, name, monkeypatch):
    monkeypatch.setattr(bundled, "_download_cifar", lambda root, folder: False)
    with pytest.raises(SourceError, match="not a directory"):
        load_source(source_config(name, root=str(tmp_path / "nowhere")))
    with pytest.raises(SourceError, match="expected"):
        load_source(source_config(name, root=str(tmp_path)))


def test_cifar10_python_batch_layout(tmp_path):
    write_cifar10(tmp_path)
    source = load_source(source_config("cifar10", root=str(tmp_path), image_size=32))
    assert pixels(source).shape == (12, 32, 32, 3)
    assert source.class_names[0] == "airplane" and source.labels.tolist()[:2] == [0, 1]
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    expected = raw["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(pixels(source)[0], expected), "channel order must be HWC RGB"


def test_cifar_missing_batch_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "_download_cifar", lambda root, folder: False)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(SourceError, match="test_batch.*cifar-10-batches-py"):
        load_source(source_config("cifar10", root=str(tmp_path)))


def test_imagefolder_classes_crop_and_bad_image_policy(tmp_path):
    root = write_folder(tmp_path / "folder")
    strict = load_source(source_config("imagefolder", root=str(root), image_size=32))
    assert len(strict) == 10, "setup lists files; nothing is decoded yet"
    with pytest.raises(SourceError, match="broken.jpg"):
        pixels(strict)
    source = load_source(
        source_config("imagefolder", root=str(root), image_size=32, on_bad_image="skip")
    )
    assert source.class_names == ("cat", "dog", "owl")
    decoded = source.reader.read(np.arange(len(source)))
    assert decoded.images.shape == (9, 32, 32, 3)
    broken = [i for i in source.ids if "broken" in i]
    assert source.check(decoded) == tuple(broken) and len(broken) == 1
    assert all("." not in i and i == i.lower() for i in source.ids)
    assert len(set(source.ids)) == 10


def test_hf_dataset_directory(tmp_path):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(4)]
    features = Features({"img": ImageFeature(), "y": ClassLabel(names=["a", "b"])})
    dataset = Dataset.from_dict({"img": images, "y": [0, 1, 1, 0]}, features=features)
    (tmp_path / "ds" / "data").mkdir(parents=True)
    dataset.to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    cfg = source_config(
        "hf", root=str(tmp_path / "ds"), image_size=16, image_column="img", label_column="y"
    )
    source = load_source(cfg)
    assert pixels(source).shape == (4, 16, 16, 3)
    assert source.class_names == ("a", "b") and source.labels.tolist() == [0, 1, 1, 0]
    with pytest.raises(SourceError, match="columns"):
        load_source(source_config("hf", root=str(tmp_path / "ds"), label_column="label"))


def test_wds_directory_pattern_json_labels_and_missing_shard(tmp_path):
    root = write_wds(tmp_path / "shards", json_label=True)
    source = load_source(source_config("wds", root=str(root), image_size=16))
    assert len(source) == 8 and source.class_names == ("ant", "bee", "cow")
    assert source.labels.tolist() == [i % 3 for i in range(8)]
    pattern = str(root / "shard-{000000..000001}.tar")
    same = load_source(source_config("wds", root=pattern, image_size=16))
    assert same.ids == source.ids
    assert np.array_equal(pixels(same), pixels(source))
    with pytest.raises(SourceError, match="shard-000002.tar"):
        load_source(source_config("wds", root=str(root / "shard-{000000..000002}.tar")))
    with pytest.raises(SourceError, match="label_field"):
        load_source(source_config("wds", root=str(root), label_field="class"))
    named = source_config("wds", root=str(root), class_names=["x", "y", "z"])
    assert load_source(named).class_names == ("x", "y", "z")
    with pytest.raises(SourceError, match="every class"):
        load_source(source_config("wds", root=str(root), class_names=["x"]))


def test_mnist_builder_end_to_end(tmp_path):
    from datasets import load_dataset
    from typer.testing import CliRunner

    from afg_datasets.cli import app

    out, mnist = tmp_path / "afg", mnist_root(tmp_path / "mnist")
    result = CliRunner().invoke(
        app,
        [
            "build-shards",
            "mnist",
            "--source-root",
            str(mnist),
            "--limit",
            "24",
            "--attacks",
            "fgsm",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    dataset = load_dataset(str(out), "fgsm")
    assert sum(len(split) for split in dataset.values()) == 48
    # the builder's genome: activations (one column per layer, pooled to 8 x 8)
    assert dataset["train"].features["genome_act_block1"].shape[-2:] == (8, 8)
    assert load_source(source_config("mnist", root=str(mnist), image_size=28)).image_size == 28
