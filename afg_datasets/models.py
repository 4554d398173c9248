"""Target models: registry name -> architecture; [0,1] input with normalization inside; taps.

Small architectures are trained on first use and cached; torchvision classifiers load their
standard weights (where the network allows) or a local checkpoint; `module:callable` builds a
user's own model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import trange

from afg_datasets.errors import ConfigError, ModelError
from afg_datasets.registry import Registry

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
INFO_FILE = "model.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_LIMIT = 2000  # test images used to report a loaded (not trained) model's accuracy


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


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SmallResNet(nn.Sequential):
    """A CIFAR-style ResNet (stem + three residual stages); taps are stage1..stage3."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32):
        super().__init__(
            OrderedDict(
                stem=nn.Sequential(
                    nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ),
                stage1=BasicBlock(width, width, 1),
                stage2=BasicBlock(width, 2 * width, 2),
                stage3=BasicBlock(2 * width, 4 * width, 2),
                head=nn.Sequential(
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
                ),
            )
        )


@dataclass(frozen=True)
class Architecture:
    """How to build a classifier and where its default taps are."""

    build: Callable[[int, int, int], nn.Module]  # (in_channels, num_classes, image_size)
    default_layers: tuple[str, ...]
    trainable: bool  # trained on first use (small models) vs. loaded (torchvision)


def _torchvision(name: str) -> Callable[[int, int, int], nn.Module]:
    def build(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        from torchvision.models import get_model

        return get_model(name, weights=None, num_classes=num_classes)

    return build


ARCHITECTURES: Registry[Architecture] = Registry(
    "model",
    {
        "small_cnn": Architecture(SmallCNN, ("block1", "block2", "block3"), True),
        "small_resnet": Architecture(SmallResNet, ("stage1", "stage2", "stage3"), True),
        "resnet18": Architecture(
            _torchvision("resnet18"), ("layer1", "layer2", "layer3", "layer4"), False
        ),
        "resnet50": Architecture(
            _torchvision("resnet50"), ("layer1", "layer2", "layer3", "layer4"), False
        ),
        "vgg16": Architecture(
            _torchvision("vgg16"),
            ("features.4", "features.9", "features.16", "features.23", "features.30"),
            False,
        ),
        "mobilenet_v3_small": Architecture(
            _torchvision("mobilenet_v3_small"),
            ("features.1", "features.3", "features.8", "features.11"),
            False,
        ),
    },
)


def is_user_model(name: str) -> bool:
    return ":" in name


def check_architecture(name: str) -> None:
    if not is_user_model(name):
        ARCHITECTURES[name]


def _user_builder(spec: str) -> Callable[[int, int, int], nn.Module]:
    """`package.module:callable`, called as callable(num_classes=K)."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"cannot import user model {spec!r}: {err}") from None
    return lambda in_channels, num_classes, image_size: factory(num_classes=num_classes)


def architecture(name: str) -> Architecture:
    if is_user_model(name):
        return Architecture(_user_builder(name), (), False)
    return ARCHITECTURES[name]


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
    test_accuracy: float  # (training time is a timing: it lives in stats.json only)
    train_images: int
    test_images: int
    weights: str = "trained"  # trained | checkpoint | torchvision-default | user
    checkpoint_sha256: str | None = None


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
        if not layers or unknown:
            raise ConfigError(
                f"unknown layer(s) {unknown or '(none given)'}; available layers: "
                f"{', '.join(available)}"
            )


class _StopForward(Exception):
    """Raised by a tap hook once every requested layer is computed (see `forward_until`)."""


@contextlib.contextmanager
def tap(
    model: TargetModel, layers: Sequence[str], stop: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of `layers` on every forward; hooks are removed on exit. With `stop`,
    the forward pass ends as soon as the last of them is computed."""
    model.check_layers(layers)
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            captured[name] = output
            if stop and len(captured) == len(set(layers)):
                raise _StopForward

        return hook

    handles = [model.net.get_submodule(n).register_forward_hook(hook_for(n)) for n in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def forward_until(
    model: TargetModel, layers: Sequence[str], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The activations of `layers` (with autograd), running the model only as deep as needed."""
    with tap(model, layers, stop=True) as acts:
        with contextlib.suppress(_StopForward):
            model(x)
        return dict(acts)


def forward_with_taps(
    model: TargetModel, layers: Sequence[str], x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Predictions and the tapped layers' activations for a batch of [0,1] images."""
    with torch.no_grad(), tap(model, layers) as acts:
        logits = model(x)
        return logits.argmax(1), dict(acts)


def freeze(model: TargetModel) -> TargetModel:
    """Eval mode with frozen parameters: attacks differentiate w.r.t. the input only."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_model(info: ModelInfo) -> TargetModel:
    net = architecture(info.architecture).build(info.in_channels, info.num_classes, info.image_size)
    return TargetModel(net, info.mean, info.std)


@dataclass(frozen=True)
class TrainSettings:
    architecture: str
    epochs: int
    batch_size: int
    lr: float
    seed: int


@dataclass(frozen=True)
class SourceData:
    """The full source, as the model stage needs it: pixels, labels and split indices."""

    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    num_classes: int

    def tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).float().div(255)
        return x, torch.from_numpy(self.labels[idx])


@torch.no_grad()
def accuracy(model: TargetModel, data: SourceData, idx: np.ndarray, batch: int = 256) -> float:
    device = next(model.parameters()).device
    correct = 0
    for chunk in np.array_split(idx, max(1, -(-len(idx) // batch))):
        x, y = data.tensors(chunk)
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    return correct / max(len(idx), 1)


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


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or torch.save (loaded with weights_only=True, no pickle)."""
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling refusal is a bad checkpoint
        raise ModelError(
            f"checkpoint {str(path)!r} is not a weights-only state dict: {err}"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a state dict")
    return state


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], num_classes: int, origin: str):
    """Load a state dict; a head that does not match the source's classes is named as such."""
    expected = net.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if mismatched:
        raise ModelError(
            f"{origin} does not match a model with {num_classes} outputs (the source's classes): "
            + "; ".join(mismatched)
        )
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ModelError(
            f"{origin} does not fit the architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    net.load_state_dict(state)


def load_pretrained(
    name: str, checkpoint: str | None, data: SourceData
) -> tuple[TargetModel, ModelInfo]:
    """A torchvision or user model with a checkpoint, standard weights, or its own weights."""
    arch = architecture(name)
    channels, size = data.images.shape[-1], data.images.shape[1]
    net = arch.build(channels, data.num_classes, size)
    sha = None
    if checkpoint:
        path = Path(checkpoint).expanduser()
        load_weights(net, read_checkpoint(path), data.num_classes, f"checkpoint {str(path)!r}")
        weights, sha = "checkpoint", hashlib.sha256(path.read_bytes()).hexdigest()
    elif is_user_model(name):
        weights = "user"
    else:
        weights = "torchvision-default"
        net = _torchvision_default(name, data.num_classes)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if not is_user_model(name) else ((0.0,), (1.0,))
    if len(mean) != channels:
        mean, std = (mean[0],) * channels, (std[0],) * channels
    model = freeze(TargetModel(net, mean, std))
    test_idx = data.test_idx[:EVAL_LIMIT]
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
        model, info = load_pretrained(name, checkpoint, data)
        return model.to(device), info, False
    directory = cache_root() / "models" / cache_key
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(directory.with_name(directory.name + ".lock")):  # concurrent ranks train once
        if (directory / INFO_FILE).is_file():
            model, info = load_model_dir(directory, device)
            return model, info, True
        model, info = train_model(settings, data, progress)
        log.info("trained target model: test accuracy %.4f", info.test_accuracy)
        tmp = directory.with_name(directory.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, info, tmp)
        os.replace(tmp, directory)
    return model.to(device), info, False


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
    known = {f.name for f in fields(ModelInfo)}  # older caches may carry extra keys
    info = ModelInfo(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    )
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
