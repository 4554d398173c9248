"""The genome-encoder contract: activations of the tapped layers -> fixed-shape arrays.

An encoder registers its class (with a `Config` dataclass of its own settings) in
`genome.ENCODERS`; the build makes it with `make_encoder(genome_section, EncoderInputs)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class EncoderInputs:
    """What the build knows when it makes an encoder."""

    layers: tuple[str, ...]
    channels: tuple[int, ...]  # per layer
    seed: int  # the NMF start (the build's `nmf` seed)
    model: Any = None  # the target model, for encoders that render images
    image_shape: tuple[int, int] | None = None  # (channels, size) of the model's input


class GenomeEncoder(Protocol):
    """Turns a batch's activations into the genome columns its `features` declare."""

    name: ClassVar[str]
    Config: ClassVar[type]  # a frozen dataclass of this encoder's settings

    def __init__(self, config: Any, inputs: EncoderInputs) -> None: ...

    def features(self) -> dict[str, Any]:
        """Column name -> `datasets` feature (fixed shapes: the corpus is rectangular)."""
        ...

    def encode(
        self, activations: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Layer name -> [B, C, H, W] -> column -> array with a batch axis. `seed` is the
        batch's seed; an encoder that samples (groupviz) must draw only from it."""
        ...
