"""The target-model wrapper ([0,1] pixels in, normalization inside) and layer taps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from afg_datasets.errors import ConfigError
from afg_datasets.models.nets import architecture


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


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # build precision -> autocast dtype


class TargetModel(nn.Module):
    """Wraps a classifier so it takes [0,1] pixels; normalization lives here. With a reduced
    `precision`, the net runs under torch.autocast; logits come back as float32."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.autocast: torch.dtype | None = None

    def set_precision(self, precision: str) -> None:
        self.autocast = PRECISIONS[precision]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.autocast is None:
            return self.net(x)
        with torch.autocast(x.device.type, dtype=self.autocast):
            return self.net(x).float()

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
            captured[name] = output.float()  # a no-op in fp32; bf16 taps become float32
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
    """Predictions and the tapped layers' activations for a batch of [0,1] images. A batch of
    one runs as two copies of it: on CPU a convolution of one image takes another path, whose
    last bits differ, so an image's genome would depend on the size of its batch."""
    single = len(x) == 1
    with torch.no_grad(), tap(model, layers) as acts:
        logits = model(torch.cat([x, x]) if single else x)
        found = {name: act[:1] if single else act for name, act in acts.items()}
        return logits[: len(x)].argmax(1), found


def freeze(model: TargetModel) -> TargetModel:
    """Eval mode with frozen parameters: attacks differentiate w.r.t. the input only."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_model(info: ModelInfo) -> TargetModel:
    net = architecture(info.architecture).build(info.in_channels, info.num_classes, info.image_size)
    return TargetModel(net, info.mean, info.std)


def to_device(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`; through pinned memory without blocking on CUDA."""
    if device.type != "cuda":
        return pixels.to(device)
    return pixels.pin_memory().to(device, non_blocking=True)


def model_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [B, H, W, C] -> what the build and `afg encode` feed the model (`scaled`)."""
    return scaled(to_device(torch.from_numpy(images), device).permute(0, 3, 1, 2))


def scaled(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float in [0, 1] with standard strides whatever the layout it came
    in (a convolution picks its algorithm, and its last bits, by the strides; `.contiguous()`
    keeps odd strides on size-1 dimensions)."""
    out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
    return out.copy_(pixels).div_(255)
