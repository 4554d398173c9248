"""`groupmap` encoder: per layer, NMF neuron groups as spatial maps and channel directions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array3D, Array4D

from afg_datasets.bounds import MAX_GENOME_SIZE, MAX_GROUPS, MAX_ITERS
from afg_datasets.checks import bounded, section
from afg_datasets.genome.base import EncoderInputs, stacked_layers
from afg_datasets.genome.nmf import batched_nmf


@section("genome.")
class GroupMapConfig:
    encoder: Literal["groupmap"] = "groupmap"
    groups: bounded(MAX_GROUPS) = 4  # NMF groups per layer
    size: bounded(MAX_GENOME_SIZE) = 8  # spatial maps are resized to size x size
    nmf_iters: bounded(MAX_ITERS) = 100


class GroupMapEncoder:
    """Genome = for every layer, G spatial factors (resized to S x S) and G channel factors.

    `genome_spatial` [L, G, S, S] and `genome_channels` [L, G, Cmax] (zero-padded), float16.
    """

    picture = None
    STACKED = ("genome_spatial", "genome_channels")  # [N, L, ...]: maps first

    @classmethod
    def layer_arrays(cls, columns, layers):
        return stacked_layers(columns, layers, cls.STACKED)

    name = "groupmap"
    Config = GroupMapConfig

    def __init__(self, config: GroupMapConfig, inputs: EncoderInputs):
        self.layers = tuple(inputs.layers)
        self.channels = tuple(inputs.channels)
        self.groups = config.groups
        self.size = config.size
        self.nmf_iters = config.nmf_iters
        self.seed = inputs.seed

    def features(self) -> dict:
        num_layers, cmax = len(self.layers), max(self.channels)
        return {
            "genome_spatial": Array4D(
                shape=(num_layers, self.groups, self.size, self.size), dtype="float16"
            ),
            "genome_channels": Array3D(shape=(num_layers, self.groups, cmax), dtype="float16"),
        }

    def factorize(
        self, activations: Mapping[str, torch.Tensor], grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(spatial maps [B, L, G, S, S], padded channel factors [B, L, G, Cmax], and per layer
        the unpadded channel factors [B, G, C_l]: each group's direction in channel space).
        With `grad`, gradients flow back to the activations through the unrolled updates."""
        spatial, directions = [], []
        cmax = max(self.channels)
        for index, layer in enumerate(self.layers):
            act = activations[layer] if grad else activations[layer].detach()
            act = act.float().clamp_min(0)
            batch, _, height, width = act.shape
            w, h = batched_nmf(
                act.flatten(2).transpose(1, 2), self.groups, self.nmf_iters, self.seed + index
            )
            maps = w.transpose(1, 2).reshape(batch, self.groups, height, width)
            spatial.append(self._resize(maps))
            directions.append(h)
        channel = torch.stack([F.pad(h, (0, cmax - h.shape[-1])) for h in directions], dim=1)
        return torch.stack(spatial, dim=1), channel, directions

    def encode(
        self, activations: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Activations name -> [B, C, H, W] (non-negative) -> genome arrays with a batch axis.
        Deterministic: the NMF start is the build's seed, so the batch `seed` is not drawn on."""
        spatial, channel, _ = self.factorize(activations)
        return {"genome_spatial": half(spatial), "genome_channels": half(channel)}

    def genome_tensors(self, activations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`encode`'s columns as float32 tensors that carry gradients to the activations (the
        NMF updates unrolled, the float16 rounding straight-through): what an adaptive attacker
        differentiates. Forward values equal `encode`'s."""
        spatial, channel, _ = self.factorize(activations, grad=True)
        return {
            "genome_spatial": _straight_through(spatial),
            "genome_channels": _straight_through(channel),
        }

    def _resize(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.shape[-1] == self.size and maps.shape[-2] == self.size:
            return maps
        downsample = maps.shape[-1] > self.size
        return F.interpolate(
            maps,
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=False,
            antialias=downsample,
        ).clamp_min(0)


def half(x: torch.Tensor) -> np.ndarray:
    finite_max = float(np.finfo(np.float16).max)
    return x.clamp(max=finite_max).cpu().numpy().astype(np.float16)


def _straight_through(x: torch.Tensor) -> torch.Tensor:
    """float16-rounded values forward, identity gradient backward."""
    finite_max = float(np.finfo(np.float16).max)
    return x + (x.clamp(max=finite_max).half().float() - x).detach()
