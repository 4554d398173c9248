"""Target models: registry name -> architecture; [0,1] input with normalization inside; taps."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import trange

from afg_datasets.errors import ConfigError
from afg_datasets.registry import Registry

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
INFO_FILE = "model.json"


class SmallCNN(nn.Sequential):
    """Three conv blocks (conv-ReLU-maxpool) and a linear head; taps are block1..block3."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 16):
        layers, channels = OrderedDict(), in_channels
        for i, out in enumerate((width, 2 * width, 4 * width), start=1):
            layers[f"block{i}"] = nn.Sequential(
                nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
            )
            channels = out
        features = channels * (image_size // 8) ** 2
        layers["head"] = nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
        super().__init__(layers)

    default_layers = ("block1", "block2", "block3")


@dataclass(frozen=True)
class ModelInfo:
    """What `model/model.json` records: enough to rebuild the architecture and judge it."""

    architecture: str
    in_channels: int
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layers: tuple[str, ...]
    seed: int
    test_accuracy: float
    train_seconds: float
    train_images: int
    test_images: int


class TargetModel(nn.Module):
    """Wraps a classifier so it takes [0,1] pixels; normalization lives here."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def layer_names(self) -> list[str]:
        return [name for name, _ in self.net.named_modules() if name]

    def check_layers(self, layers: Sequence[str]) -> None:
        available = self.layer_names()
        unknown = [name for name in layers if name not in available]
        if unknown:
            raise ConfigError(
                f"unknown layer(s) {unknown}; available layers: {', '.join(available)}"
            )


@contextlib.contextmanager
def tap(model: TargetModel, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of `layers` on every forward; hooks are removed on exit."""
    model.check_layers(layers)
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            captured[name] = output

        return hook

    handles = [model.net.get_submodule(n).register_forward_hook(hook_for(n)) for n in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("model", {"small_cnn": SmallCNN})


def build_model(info: ModelInfo) -> TargetModel:
    net = ARCHITECTURES[info.architecture](info.in_channels, info.num_classes, info.image_size)
    return TargetModel(net, info.mean, info.std)


def freeze(model: TargetModel) -> TargetModel:
    """Eval mode with frozen parameters: attacks differentiate w.r.t. the input only."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class TrainSettings:
    architecture: str
    epochs: int
    batch_size: int
    lr: float
    seed: int


def train_model(
    settings: TrainSettings,
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    num_classes: int,
    progress: bool = False,
) -> tuple[TargetModel, ModelInfo]:
    """Train on the train split, report top-1 accuracy on the test split. Seeded, CPU-friendly."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    y = torch.from_numpy(labels)
    mean = x[train_idx].mean(dim=(0, 2, 3)).tolist()
    std = x[train_idx].std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = ARCHITECTURES[settings.architecture](x.shape[1], num_classes, x.shape[-1])
        model = TargetModel(net, mean, std)
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        generator = torch.Generator().manual_seed(settings.seed)
        model.train()
        for _ in trange(
            settings.epochs, desc="train target model", unit="epoch", disable=not progress
        ):
            order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
            for batch in order.split(settings.batch_size):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                opt.step()
    freeze(model)
    with torch.no_grad():
        accuracy = (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()
    info = ModelInfo(
        architecture=settings.architecture,
        in_channels=x.shape[1],
        num_classes=num_classes,
        image_size=x.shape[-1],
        mean=tuple(mean),
        std=tuple(std),
        layers=tuple(net.default_layers),
        seed=settings.seed,
        test_accuracy=round(accuracy, 6),
        train_seconds=round(time.perf_counter() - start, 3),
        train_images=len(train_idx),
        test_images=len(test_idx),
    )
    return model, info


def save_model(model: TargetModel, info: ModelInfo, directory: Path) -> Path:
    """Write model.safetensors and model.json (both atomically); returns the weights path."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / MODEL_FILE
    tmp = weights.with_suffix(".partial")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, weights)
    tmp_info = directory / (INFO_FILE + ".partial")
    tmp_info.write_text(json.dumps(asdict(info), indent=2, sort_keys=True) + "\n")
    os.replace(tmp_info, directory / INFO_FILE)
    return weights


def load_model_dir(directory: Path, device: str = "cpu") -> tuple[TargetModel, ModelInfo]:
    """Rebuild a saved target model (safetensors, no pickle), frozen and in eval mode."""
    raw = json.loads((directory / INFO_FILE).read_text())
    info = ModelInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = build_model(info)
    model.load_state_dict(load_file(str(directory / MODEL_FILE)))
    return freeze(model.to(device)), info


def load_target_model(corpus_dir: str | os.PathLike, device: str = "cpu") -> TargetModel:
    """The target model a corpus was built with, in eval mode."""
    return load_model_dir(Path(corpus_dir) / "model", device)[0]


def cache_root() -> Path:
    """Where trained target models are cached (AFG_CACHE_DIR, else ~/.cache/afg-datasets)."""
    env = os.environ.get("AFG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "afg-datasets"
