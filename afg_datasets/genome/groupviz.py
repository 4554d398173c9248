"""`groupviz` encoder: the NMF groups of `groupmap`, each rendered by feature visualization.

Lucid's recipe (Olah et al., "Feature Visualization" / "The Building Blocks of
Interpretability"), re-implemented in torch because no maintained torch library renders a
whole batch of different objectives in one optimization: images parameterized in Fourier
space with 1/f scaling, colour decorrelation and a sigmoid; Lucid's random pad / jitter /
scale / rotate transforms, scaled to the image size; Adam. Every group x layer x sample of a
batch is one image of a single parameter tensor, optimized together; each layer's images run
through the model only as far as that layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array5D, Image

from afg_datasets.bounds import MAX_ITERS, MAX_RENDER
from afg_datasets.checks import LearningRate, bounded, section
from afg_datasets.genome.base import EncoderInputs
from afg_datasets.genome.groupmap import GroupMapConfig, GroupMapEncoder, half
from afg_datasets.models import TargetModel, forward_until

# Lucid's colour correlation (square root of the ImageNet colour covariance, by SVD).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_SCALES = [1 + (i - 5) / 50 for i in range(11)]  # Lucid's random_scale choices
_ANGLES = list(range(-10, 11)) + 5 * [0]  # Lucid's random_rotate choices (degrees)
_LUCID_SIZE = 80  # pad 12 / jitter 8 / jitter 4 are Lucid's values for 80-pixel renders
_MOSAIC_GAP = 128  # grey 1-pixel lines between tiles
LUCID_LR = 0.05  # Lucid's Adam learning rate


class FourierImages:
    """K images [K, C, S, S] in (0, 1) from a Fourier-space parameter (Lucid's fft_image)."""

    def __init__(self, count: int, channels: int, size: int, generator, device):
        freqs = torch.sqrt(
            torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None, :] ** 2
        )
        self.scale = (1.0 / freqs.clamp_min(1.0 / size) * size).to(device)
        shape = (count, channels, size, size // 2 + 1, 2)
        init = torch.randn(shape, generator=generator) * 0.01
        self.spectrum = init.to(device).requires_grad_(True)
        self.size = size
        self.channels = channels

    def __call__(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        if self.channels == 3:  # decorrelated colour -> RGB
            x = torch.einsum("kchw,dc->kdhw", x, _COLOR.to(x.device))
        return torch.sigmoid(x)


@dataclass(frozen=True)
class Transforms:
    """Lucid's standard transforms for a given render size, applied per image in one call."""

    pad: int
    jitter: int

    @classmethod
    def for_size(cls, size: int) -> Transforms:
        factor = size / _LUCID_SIZE
        # Lucid jitters by 8 then by 4 pixels: one shift of up to 12 does the same in one step.
        return cls(pad=max(1, round(12 * factor)), jitter=max(1, round((8 + 4) * factor)))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count, _, size, _ = x.shape
        padded = F.pad(x, (self.pad,) * 4, value=0.5)
        full = size + 2 * self.pad

        def pick(choices: list[float]) -> torch.Tensor:
            index = torch.randint(len(choices), (count,), generator=generator)
            return torch.tensor(choices)[index]

        scale, angle = pick(_SCALES), pick(_ANGLES) * math.pi / 180
        shift = torch.randint(-self.jitter, self.jitter + 1, (count, 2), generator=generator)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos, -sin, 2 * shift[:, 0] / full], dim=1),
                torch.stack([sin, cos, 2 * shift[:, 1] / full], dim=1),
            ],
            dim=1,
        )
        theta[:, :, :2] *= size / full  # crop the centre `size` pixels of the padded image
        grid = F.affine_grid(theta.to(x), [count, x.shape[1], size, size], align_corners=False)
        return F.grid_sample(padded, grid, padding_mode="border", align_corners=False)


def group_objectives(
    model: TargetModel, layers: Sequence[str], directions: list[torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Per image: mean over positions of <activation, its group's direction> at its layer.
    Images are ordered layer-major; each layer's slice runs through the model only as far as
    that layer (one forward per layer, never one per visualization)."""
    values, offset = [], 0
    for layer, direction in zip(layers, directions, strict=True):
        flat = direction.reshape(-1, direction.shape[-1])  # [B*G, C_l]
        act = forward_until(model, [layer], x[offset : offset + len(flat)])[layer]
        values.append(torch.einsum("kchw,kc->k", act, flat) / act[0, 0].numel())
        offset += len(flat)
    return torch.cat(values)


def render(
    model: TargetModel,
    layers: Sequence[str],
    directions: list[torch.Tensor],
    channels: int,
    size: int,
    steps: int,
    lr: float,
    seed: int,
    objective: Callable[..., torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visualize every (layer, sample, group) direction at once.

    directions[l]: [B, G, C_l] (unit, non-negative). Returns the images [L, B, G, C, S, S] in
    [0, 1] and the objective trace [steps + 1, L*B*G] (row 0: the random start, last row: the
    final images, both without transforms). `objective` (model, layers, directions, images)
    -> one value per image: what is maximized (default `group_objectives`).
    """
    objective = objective or group_objectives
    batch, groups = directions[0].shape[:2]
    device = directions[0].device
    generator = torch.Generator().manual_seed(seed)
    images = FourierImages(len(layers) * batch * groups, channels, size, generator, device)
    transforms = Transforms.for_size(size)
    optimizer = torch.optim.Adam([images.spectrum], lr=lr)
    trace = []
    with torch.enable_grad():
        for _ in range(steps):
            x = images()
            if not trace:
                trace.append(_no_grad(objective, model, layers, directions, x.detach()))
            value = objective(model, layers, directions, transforms(x, generator))
            optimizer.zero_grad(set_to_none=True)
            (-value.sum()).backward()
            optimizer.step()
            trace.append(value.detach())
    final = images().detach()
    trace.append(_no_grad(objective, model, layers, directions, final))
    shaped = final.reshape(len(layers), batch, groups, channels, size, size)
    return shaped, torch.stack(trace).cpu()


def _no_grad(objective, model, layers, directions, x) -> torch.Tensor:
    with torch.no_grad():
        return objective(model, layers, directions, x)


def mosaic(images: np.ndarray) -> np.ndarray:
    """uint8 [B, L, G, C, S, S] -> [B, L*(S+1)-1, G*(S+1)-1, C]: rows layers, columns groups."""
    batch, layers, groups, channels, size, _ = images.shape
    out = np.full(
        (batch, layers * (size + 1) - 1, groups * (size + 1) - 1, channels),
        _MOSAIC_GAP,
        dtype=np.uint8,
    )
    for row in range(layers):
        for col in range(groups):
            top, left = row * (size + 1), col * (size + 1)
            tile = images[:, row, col].transpose(0, 2, 3, 1)
            out[:, top : top + size, left : left + size] = tile
    return out


@section("genome.")
class GroupVizConfig(GroupMapConfig):
    encoder: Literal["groupviz"] = "groupviz"
    steps: bounded(MAX_ITERS) = 128  # Adam steps per visualization (Lucid: 512)
    lr: LearningRate = LUCID_LR  # Adam learning rate
    image_size: bounded(MAX_RENDER) | None = None  # rendered size; None: the model's input size


class GroupVizEncoder(GroupMapEncoder):
    """`groupmap`'s arrays plus `genome_images` [L, G, C, S, S] uint8 (one rendered image per
    group and layer) and `genome_mosaic`, the same images as one PNG for the Hub viewer."""

    name = "groupviz"
    Config = GroupVizConfig
    picture = "genome_mosaic"
    genome_tensors = None  # rendering is not differentiated: no adaptive-attack rows
    STACKED = (*GroupMapEncoder.STACKED, "genome_images")

    def __init__(self, config: GroupVizConfig, inputs: EncoderInputs):
        if inputs.model is None or inputs.image_shape is None:
            raise ValueError("the groupviz encoder needs the target model and its input shape")
        super().__init__(config, inputs)
        self.model: TargetModel = inputs.model
        self.image_channels, model_size = inputs.image_shape
        self.image_size = config.image_size or model_size
        self.steps = config.steps
        self.lr = config.lr

    def render_settings(self) -> tuple[int, int, int, float]:
        """`render`'s (image channels, image size, steps, lr) for this encoder."""
        return self.image_channels, self.image_size, self.steps, self.lr

    def features(self) -> dict:
        shape = (len(self.layers), self.groups, self.image_channels, self.image_size)
        return {
            **super().features(),
            "genome_images": Array5D(shape=(*shape, self.image_size), dtype="uint8"),
            "genome_mosaic": Image(),
        }

    def encode(self, activations: Mapping[str, torch.Tensor], seed: int = 0) -> dict:
        spatial, channel, directions = self.factorize(activations)
        images, _ = render(self.model, self.layers, directions, *self.render_settings(), seed)
        stored = images.mul(255).round().to(torch.uint8).transpose(0, 1).cpu().numpy()
        return {
            "genome_spatial": half(spatial),
            "genome_channels": half(channel),
            "genome_images": stored,
            "genome_mosaic": mosaic(stored),
        }
