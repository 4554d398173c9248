"""The recognizer: a small CNN over named input arrays with two readouts.

`two_head`: adversarial-or-not (sigmoid) and the original class (softmax).
`mixed`: the paper's formulation, multi-label over `mixed_label` (K+1 sigmoids, BCE); the
original class is read out as the most likely class other than the target model's prediction
when the adversarial flag fires, else the most likely class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

OBJECTIVES = ("two_head", "mixed")


def _branch(shape: tuple[int, ...], width: int) -> nn.Module:
    """Square trailing axes (maps, images) -> conv branch, leading axes as channels; else MLP."""
    if len(shape) >= 3 and shape[-1] == shape[-2] > 1:
        channels = math.prod(shape[:-2])
        stride = 2 if shape[-1] >= 16 else 1  # compute, not capacity: see `matched_width`
        return nn.Sequential(
            nn.Unflatten(1, (channels, *shape[-2:])),
            nn.Conv2d(channels, width, 3, stride=stride, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
    return nn.Sequential(nn.Linear(math.prod(shape), 4 * width), nn.ReLU())


class RecognizerNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="afg-datasets",
    tags=["afg", "adversarial-detection", "adversarial-examples"],
    license="apache-2.0",
):
    """Per-input standardization (train-set statistics as buffers), branches, shared trunk.
    Saved and loaded by huggingface_hub's mixin: config.json (the constructor arguments) and
    model.safetensors."""

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        num_classes: int,
        objective: str = "two_head",
        width: int = 16,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.names = sorted(shapes)
        self.shapes = {name: tuple(shapes[name]) for name in self.names}
        self.num_classes = num_classes
        self.objective = objective
        self.branches = nn.ModuleDict({n: _branch(self.shapes[n], width) for n in self.names})
        for name in self.names:
            size = math.prod(self.shapes[name])
            self.register_buffer(f"mean_{name}", torch.zeros(size))
            self.register_buffer(f"std_{name}", torch.ones(size))
        with torch.no_grad():
            probe = {n: torch.zeros(2, *self.shapes[n]) for n in self.names}
            features = sum(b(self._flat(probe, n)).shape[1] for n, b in self.branches.items())
        self.trunk = nn.Sequential(nn.Linear(features, 128), nn.ReLU(), nn.Dropout(0.2))
        outputs = num_classes + 1
        self.head = nn.Linear(128, outputs)  # two_head: [adv logit, K class logits]

    def _flat(self, inputs: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        x = inputs[name].float().flatten(1)
        return (x - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")

    def fit_normalization(self, inputs: Mapping[str, torch.Tensor]) -> None:
        for name in self.names:
            x = inputs[name].float().flatten(1)
            getattr(self, f"mean_{name}").copy_(x.mean(0))
            getattr(self, f"std_{name}").copy_(x.std(0).clamp_min(1e-3))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        features = [self.branches[n](self._flat(inputs, n)) for n in self.names]
        return self.head(self.trunk(torch.cat(features, dim=1)))

    def loss(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.objective == "mixed":
            return nn.functional.binary_cross_entropy_with_logits(
                logits, batch["mixed_label"].float()
            )
        adv = nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0], batch["is_adversarial"].float()
        )
        return adv + nn.functional.cross_entropy(logits[:, 1:], batch["label"])

    def readout(
        self, logits: torch.Tensor, target_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(probability adversarial, original class) from raw outputs."""
        if self.objective == "two_head":
            return torch.sigmoid(logits[:, 0]), logits[:, 1:].argmax(1)
        p_adv = torch.sigmoid(logits[:, -1])
        classes = logits[:, :-1].clone()
        others = classes.scatter(1, target_pred.view(-1, 1), float("-inf"))
        original = torch.where(p_adv > 0.5, others.argmax(1), classes.argmax(1))
        return p_adv, original


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def matched_width(
    shapes: Mapping[str, tuple[int, ...]], num_classes: int, objective: str, target: int
) -> int:
    """The branch width whose net over `shapes` has the parameter count closest to `target`
    (a control gets the capacity of the net it is compared with)."""

    def count(width: int) -> int:
        return parameter_count(RecognizerNet(shapes, num_classes, objective, width))

    low, high = 1, 1024  # the count grows with the width: bisect for the first >= target
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < target else (low, middle)
    return min((low, max(low - 1, 1)), key=lambda w: abs(count(w) - target))
