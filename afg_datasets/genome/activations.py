"""`activations` encoder: each tapped layer's activations, average-pooled to size x size, one
column per layer, no factorization: the reference that says what NMF throws away. Magnitudes
are kept (nothing is normalized), so an attack's larger or smaller activations stay visible."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array3D

from afg_datasets.bounds import MAX_GENOME_SIZE
from afg_datasets.checks import bounded, section
from afg_datasets.genome.base import EncoderInputs
from afg_datasets.genome.groupmap import _straight_through, half


@section("genome.")
class ActivationsConfig:
    encoder: Literal["activations"] = "activations"
    size: bounded(MAX_GENOME_SIZE) = 8  # each layer's maps are average-pooled to size x size


def column(layer: str) -> str:
    """The genome column of a layer: `genome_act_<layer>` (dots and other marks as `_`)."""
    return "genome_act_" + re.sub(r"[^A-Za-z0-9]+", "_", layer)


class ActivationsEncoder:
    """Genome = per layer, its activations [C_l, S, S] (float16): no padding to the widest
    layer, since each layer has a column of its own."""

    name = "activations"
    Config = ActivationsConfig
    picture = None

    def __init__(self, config: ActivationsConfig, inputs: EncoderInputs):
        self.layers = tuple(inputs.layers)
        self.channels = tuple(inputs.channels)
        # Format 1.4: a layer smaller than `size` is kept at its own size (pooling up to a
        # larger grid repeats values: more bytes, no information). Unknown sizes (a corpus
        # of format 1.3 or older): every layer at `size`, as it was built.
        sizes = inputs.sizes or (config.size,) * len(self.layers)
        self.sizes = tuple(min(config.size, size) for size in sizes)

    @classmethod
    def layer_arrays(cls, columns, layers):
        return {layer: [np.asarray(columns[column(layer)])] for layer in layers}

    def features(self) -> dict:
        return {
            column(layer): Array3D(shape=(channels, size, size), dtype="float16")
            for layer, channels, size in zip(self.layers, self.channels, self.sizes, strict=True)
        }

    def _pooled(self, activations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            column(layer): F.adaptive_avg_pool2d(activations[layer].float(), size)
            for layer, size in zip(self.layers, self.sizes, strict=True)
        }

    def encode(
        self, activations: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Deterministic: nothing is sampled, so the batch `seed` is not drawn on."""
        detached = {layer: activations[layer].detach() for layer in self.layers}
        return {name: half(value) for name, value in self._pooled(detached).items()}

    def genome_tensors(self, activations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`encode`'s columns as float32 tensors with gradients (the float16 rounding
        straight-through): what an adaptive attacker differentiates."""
        return {name: _straight_through(value) for name, value in self._pooled(activations).items()}
