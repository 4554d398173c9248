"""Shared test material: small real sources written on demand (folders, tars, CIFAR and
HF layouts), the shared MNIST, quick attack settings, a checkpoint, the CLI in a subprocess."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import get_model

QUICK = {
    "pgd": {"nb_iter": 5},
    "pgd_l2": {"nb_iter": 5},
    "bim": {"nb_iter": 5},
    "mifgsm": {"nb_iter": 5},
    "cw_l2": {"max_iterations": 10, "binary_search_steps": 2},
    "ddn": {"nb_iter": 10},
    "ead": {"max_iterations": 10, "binary_search_steps": 2},
    "lbfgs": {"max_iterations": 5, "binary_search_steps": 2},
    "fab": {"n_iter": 5},
    "spsa": {"nb_iter": 2, "nb_sample": 16},
    "stadv": {"max_iterations": 5},
    "singlepixel": {"max_pixels": 5},
    "localsearch": {"round_ub": 2, "max_nb_seeds": 8},
    "apgd_ce": {"steps": 5},
    "apgd_t": {"steps": 5},
    "apgd_l2": {"steps": 5},
    "square": {"n_queries": 50},
    "deepfool": {"steps": 5},
}


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        batch = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "fine_labels": [0, 1, 2]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [f"class{i}" for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names}))


def write_hf(root: Path) -> None:
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(4)]
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    dataset = Dataset.from_dict({"image": images, "label": [0, 1, 1, 0]}, features=features)
    (root / "data").mkdir(parents=True)
    dataset.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))


TOKEN = "hf_afgTESTtoken0123456789"


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "afg_datasets.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


REPO = Path(__file__).resolve().parents[1]  # the checkout: every test finds files from here
PACKAGE = REPO / "afg_datasets"
TEST_DATA = REPO / "tests" / "data"
MNIST = REPO.parent / "shared" / "data" / "mnist"


needs_mnist = pytest.mark.skipif(
    not MNIST.is_dir(),
    reason="the real MNIST test set is not at ../shared/data/mnist (t10k-*-ubyte.gz there runs it)",
)


def mnist_root(root: Path, count: int = 40) -> Path:
    """The real MNIST test set where it is at hand, else a small one written here in its idx
    format (every class present), so a test of the mnist source always runs."""
    if MNIST.is_dir():
        return MNIST
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)), True)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(count) % 10, True)
    return root


def write_cifar10(root: Path, per_batch: int = 2) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": list(range(per_batch)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def write_folder(root: Path, corrupt: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "owl"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"Img.{i}.png")
    if corrupt:
        (root / "owl" / "broken.jpg").write_bytes(b"definitely not a jpeg")
    return root


def write_wds(root: Path, shards: int = 2, per_shard: int = 4, json_label: bool = False) -> Path:
    """Shards as img2dataset writes them, with webdataset's own ShardWriter; classes.txt."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pattern = str(root / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for i in range(shards * per_shard):
            array = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
            image = io.BytesIO()
            Image.fromarray(array).save(image, format="JPEG" if i % 2 else "PNG")
            label = {"json": {"label": i % 3}} if json_label else {"cls": i % 3}
            ext = "jpg" if i % 2 else "png"
            sink.write({"__key__": f"{i:08d}", ext: image.getvalue(), **label})
    (root / "classes.txt").write_text("ant\nbee\ncow\n")
    return root


def save_resnet18(path, num_classes):
    torch.manual_seed(0)
    state = get_model("resnet18", num_classes=num_classes).state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
