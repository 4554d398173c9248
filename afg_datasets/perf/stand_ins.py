"""What a calibration runs on (`afg estimate`, the device check): the build's own source and
weights where they are at hand, else stand-ins that cost the same to attack and encode (random
pixels of the configured shape, the architecture with random weights), and the measured cost of
training a small net that is not trained yet."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from afg_datasets.building.context import model_cache_key
from afg_datasets.config import BuildConfig
from afg_datasets.layout import INFO_FILE
from afg_datasets.models import ModelInfo, SourceData, TargetModel, freeze, load_model_dir
from afg_datasets.models.nets import IMAGENET_MEAN, IMAGENET_STD, architecture
from afg_datasets.models.storage import cached_model_dir
from afg_datasets.models.training import load_pretrained
from afg_datasets.sources.base import ArrayReader, Source

# (channels, classes) of a source that is not at hand; others are estimated ImageNet-shaped
SYNTHETIC_SHAPES = {"mnist": (1, 10), "cifar10": (3, 10), "cifar100": (3, 100)}


def synthetic_source(cfg: BuildConfig, count: int) -> Source:
    """Random pixels of the configured shape (decoding is then not part of the estimate)."""
    rng = np.random.default_rng(cfg.seed)
    channels, classes = SYNTHETIC_SHAPES.get(cfg.source.name, (3, 1000))
    size = cfg.source.image_size
    images = rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8)
    return Source(
        name=f"synthetic-{cfg.source.name}",
        labels=rng.integers(0, classes, count).astype(np.int64),
        class_names=tuple(str(c) for c in range(classes)),
        ids=tuple(f"synthetic-{i:07d}" for i in range(count)),
        license="none",
        citation="random pixels",
        reader=ArrayReader(images),
        channels=channels,
        image_size=size,
    )


def random_model(name: str, source: Source) -> tuple[TargetModel, ModelInfo]:
    """The configured architecture with random weights: a forward+backward costs the same."""
    arch = architecture(name)
    classes = len(source.class_names)
    net = arch.build(source.channels, classes, source.image_size)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if source.channels == 3 else ((0.5,), (0.25,))
    model = freeze(TargetModel(net, mean, std))
    info = ModelInfo(
        name,
        source.channels,
        classes,
        source.image_size,
        mean,
        std,
        arch.default_layers,
        0,
        0.0,
        0,
        0,
        "random",
    )
    return model, info


def calibration_model(cfg: BuildConfig, source: Source, device: str):
    """(model, info, whether a trainable net still has to be trained). The build's own weights
    where they are at hand (a checkpoint, or a small net already trained and cached), else the
    architecture with random weights. Nothing is trained or cached here."""
    arch = architecture(cfg.model.architecture)
    if cfg.model.checkpoint:
        empty = np.zeros(0, dtype=np.int64)
        data = SourceData(source, empty, empty, len(source.class_names))
        model, info = load_pretrained(cfg.model.architecture, cfg.model.checkpoint, data, device)
        return model, info, False
    cached = cached_model_dir(model_cache_key(cfg))
    if arch.trainable and (cached / INFO_FILE).is_file():
        model, info = load_model_dir(cached, device)
        return model, info, False
    model, info = random_model(cfg.model.architecture, source)
    return model.to(device), info, arch.trainable


def training_seconds(cfg: BuildConfig, source: Source, train_images: int, device) -> float:
    """Measured optimizer steps of the configured small net (random data, the build's batch
    size), times the steps `model.epochs` over `train_images` take."""
    arch = architecture(cfg.model.architecture)
    size, batch = source.image_size, cfg.model.batch_size
    net = arch.build(source.channels, len(source.class_names), size).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
    x = torch.rand(batch, source.channels, size, size, device=device)
    y = torch.randint(0, len(source.class_names), (batch,), device=device)
    runs = []
    for _ in range(4):  # the first is a warm-up
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs.append(time.perf_counter() - start)
    return float(np.median(runs[1:])) * math.ceil(train_images / batch) * cfg.model.epochs
