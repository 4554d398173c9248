"""Obtaining the target model: a small net trained on the source's train split (seeded, cached
on first use), or a torchvision / user model with loaded weights."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn
from tqdm.auto import trange

from afg_datasets.errors import CorpusError, ModelError
from afg_datasets.files import atomic_directory
from afg_datasets.layout import INFO_FILE, sha256_file
from afg_datasets.models.nets import (
    ARCHITECTURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    architecture,
    is_user_model,
)
from afg_datasets.models.storage import (
    cached_model_dir,
    load_model_dir,
    load_weights,
    read_checkpoint,
    save_model,
)
from afg_datasets.models.target import ModelInfo, TargetModel, freeze
from afg_datasets.sources.base import Source

log = logging.getLogger(__name__)
EVAL_LIMIT = 2000  # test images used to report a loaded (not trained) model's accuracy


@dataclass(frozen=True)
class TrainSettings:
    architecture: str
    epochs: int
    batch_size: int
    lr: float
    seed: int


@dataclass(frozen=True)
class SourceData:
    """The full source, as the model stage needs it: the source (pixels read through its
    reader, in batches) and the split indices."""

    source: Source
    train_idx: np.ndarray
    test_idx: np.ndarray
    num_classes: int
    used: int | None = None  # sources the build uses (--limit); a loaded model is scored on
    # the test split among those, so setup decodes no image the build does not use

    def tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source.tensors(idx)


@torch.no_grad()
def accuracy(model: TargetModel, data: SourceData, idx: np.ndarray, batch: int = 256) -> float:
    device = next(model.parameters()).device
    correct = total = 0
    for chunk in np.array_split(idx, max(1, -(-len(idx) // batch))):
        x, y = data.tensors(chunk)
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / max(total, 1)


def train_model(
    settings: TrainSettings, data: SourceData, progress: bool = False
) -> tuple[TargetModel, ModelInfo]:
    """Train on the train split, report top-1 accuracy on the test split. Seeded, CPU-friendly."""
    x, y = data.tensors(data.train_idx)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    arch = ARCHITECTURES[settings.architecture]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = TargetModel(arch.build(x.shape[1], data.num_classes, x.shape[-1]), mean, std)
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        generator = torch.Generator().manual_seed(settings.seed)
        model.train()
        for _ in trange(
            settings.epochs, desc="train target model", unit="epoch", disable=not progress
        ):
            for batch in torch.randperm(len(y), generator=generator).split(settings.batch_size):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                opt.step()
    freeze(model)
    info = ModelInfo(
        architecture=settings.architecture,
        in_channels=x.shape[1],
        num_classes=data.num_classes,
        image_size=x.shape[-1],
        mean=tuple(mean),
        std=tuple(std),
        layers=arch.default_layers,
        seed=settings.seed,
        test_accuracy=round(accuracy(model, data, data.test_idx), 6),
        train_images=len(data.train_idx),
        test_images=len(data.test_idx),
    )
    return model, info


def load_pretrained(
    name: str, checkpoint: str | None, data: SourceData, device: str = "cpu"
) -> tuple[TargetModel, ModelInfo]:
    """A torchvision or user model with a checkpoint, standard weights, or its own weights."""
    arch = architecture(name)
    channels, size = data.source.channels, data.source.image_size
    net = arch.build(channels, data.num_classes, size)
    sha = None
    if checkpoint:
        path = Path(checkpoint).expanduser()
        load_weights(net, read_checkpoint(path), data.num_classes, f"checkpoint {str(path)!r}")
        weights, sha = "checkpoint", sha256_file(path)
    elif is_user_model(name):
        weights = "user"
    else:
        weights = "torchvision-default"
        net = _torchvision_default(name, data.num_classes)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if not is_user_model(name) else ((0.0,), (1.0,))
    if len(mean) != channels:
        mean, std = (mean[0],) * channels, (std[0],) * channels
    model = freeze(TargetModel(net, mean, std)).to(device)
    test_idx = data.test_idx[data.test_idx < (data.used or len(data.source))][:EVAL_LIMIT]
    info = ModelInfo(
        name,
        channels,
        data.num_classes,
        size,
        tuple(mean),
        tuple(std),
        arch.default_layers,
        0,
        round(accuracy(model, data, test_idx), 6),
        0,
        len(test_idx),
        weights,
        sha,
    )
    return model, info


def _torchvision_default(name: str, num_classes: int) -> nn.Module:
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(name).DEFAULT
    outputs = len(weights.meta["categories"])
    if outputs != num_classes:
        raise ModelError(
            f"{name}'s standard weights have {outputs} outputs but the source has "
            f"{num_classes} classes; pass --checkpoint with a matching head"
        )
    try:
        return get_model(name, weights=weights)
    except Exception as err:  # noqa: BLE001 - download failures come in many types
        raise ModelError(
            f"could not get {name}'s standard weights ({err}); without network, "
            "pass --checkpoint PATH (state dict or safetensors)"
        ) from None


def obtain_target_model(
    name: str,
    checkpoint: str | None,
    settings: TrainSettings,
    cache_key: str,
    data: SourceData,
    device: str,
    progress: bool = False,
) -> tuple[TargetModel, ModelInfo, bool]:
    """Trained-and-cached, or loaded. Returns (model, info, came from the cache)."""
    if checkpoint or not architecture(name).trainable:
        model, info = load_pretrained(name, checkpoint, data, device)
        return model, info, False
    directory = cached_model_dir(cache_key)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(directory.with_name(directory.name + ".lock")):  # concurrent ranks train once
        if (directory / INFO_FILE).is_file():
            try:
                model, info = load_model_dir(directory, device)
                return model, info, True
            except (ModelError, CorpusError) as err:  # a shared cache never stops a build
                log.warning("cached model %s unreadable (%s); training it again", directory, err)
        model, info = train_model(settings, data, progress)
        log.info("trained target model: test accuracy %.4f", info.test_accuracy)
        try:
            atomic_directory(directory, lambda tmp: save_model(model, info, tmp), replace=True)
        except OSError as err:
            log.warning("could not cache the model in %s (%s); built without it", directory, err)
    return model.to(device), info, False
