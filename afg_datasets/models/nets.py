"""Target-model architectures: registry name -> how to build the net and where its taps are.

Small nets are trained on first use; torchvision classifiers load weights; `module:callable`
builds a user's own model.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import re
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from afg_datasets.documents import read_text
from afg_datasets.errors import ConfigError, ModelError
from afg_datasets.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


_USER_MODEL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
USER_MODEL_RULE = (
    "package.module:callable from your own code (not the standard library), called as "
    "callable(num_classes=K) and returning a torch.nn.Module"
)


def is_user_model(name: str) -> bool:
    return ":" in name


def check_user_model(spec: str) -> None:
    """A ConfigError unless `spec` may name a user's model: a dotted module path and a name,
    outside the standard library. Nothing is imported here."""
    if not _USER_MODEL.match(spec):
        raise ConfigError(f"model {spec!r} is not a valid {USER_MODEL_RULE}")
    top = spec.split(".", 1)[0].split(":", 1)[0]
    if top in sys.stdlib_module_names or top == "__main__":
        raise ConfigError(f"model {spec!r} names the standard library; use {USER_MODEL_RULE}")


def check_architecture(name: str) -> None:
    if is_user_model(name):
        check_user_model(name)
    else:
        ARCHITECTURES[name]


def defines(module_name: str, attr: str) -> str | None:
    """Why `module_name` may not be imported for `attr` (None: it may): its source is found
    without running anything (no parent package imported), and must define `attr` at its top
    level (a def, class, assignment or named import). A module that does not is never
    imported: importing any installed module runs its code."""
    locations = None
    spec = None
    for depth in range(1, module_name.count(".") + 2):
        name = ".".join(module_name.split(".")[:depth])
        spec = importlib.machinery.PathFinder.find_spec(name, locations)
        if spec is None:
            return f"no module {name!r} is installed or on the path"
        locations = spec.submodule_search_locations
    origin = Path(spec.origin or "")
    if origin.suffix != ".py" or not origin.is_file():
        return f"{module_name!r} is not a Python source file ({origin.name or 'no file'})"
    try:
        tree = ast.parse(read_text(origin, ModelError))
    except (SyntaxError, ValueError) as err:
        return f"{origin} cannot be parsed ({err})"
    return None if attr in _top_level_names(tree) else f"{origin} defines no top-level {attr!r}"


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    return names


def _user_builder(spec: str) -> Callable[[int, int, int], nn.Module]:
    """`package.module:callable`, called as callable(num_classes=K); what it returns must be
    an nn.Module. Its module is imported only when its source defines the callable."""
    check_user_model(spec)
    module_name, _, attr = spec.partition(":")
    why = defines(module_name, attr)
    if why:
        raise ModelError(f"model {spec!r}: {why}; nothing was imported. Use {USER_MODEL_RULE}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything on import
        raise ModelError(f"cannot import user model {spec!r}: {err}") from None
    if not callable(factory):
        raise ModelError(f"user model {spec!r} is not callable; use {USER_MODEL_RULE}")

    def build(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        try:
            net = factory(num_classes=num_classes)
        except Exception as err:  # noqa: BLE001 - any failure of user code is one error line
            raise ModelError(f"user model {spec!r} failed: {type(err).__name__}: {err}") from None
        if not isinstance(net, nn.Module):
            raise ModelError(
                f"user model {spec!r} returned {type(net).__name__}, not a torch.nn.Module"
            )
        return net

    return build


def architecture(name: str) -> Architecture:
    if is_user_model(name):
        return Architecture(_user_builder(name), (), False)
    return ARCHITECTURES[name]
