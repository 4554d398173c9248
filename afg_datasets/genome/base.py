"""The genome-encoder contract: activations of the tapped layers -> fixed-shape arrays.

An encoder registers its class in `genome.ENCODERS`; its `Config` (a `checks.section`, first
field `encoder: Literal[<its name>]`) is the build config's `genome` section when it is chosen,
and the build makes it with `make_encoder(config, EncoderInputs)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # the contract's types only: naming encoders needs no torch
    import torch


@dataclass(frozen=True)
class EncoderInputs:
    """What the build knows when it makes an encoder."""

    layers: tuple[str, ...]
    channels: tuple[int, ...]  # per layer
    seed: int  # the NMF start (the build's `nmf` seed)
    model: Any = None  # the target model, for encoders that render images
    image_shape: tuple[int, int] | None = None  # (channels, size) of the model's input
    sizes: tuple[int, ...] = ()  # per layer, its spatial size (format 1.4; empty: unknown)


class GenomeEncoder(Protocol):
    """Turns a batch's activations into the genome columns its `features` declare."""

    name: ClassVar[str]
    Config: ClassVar[type]  # its settings: a validated section, `encoder` its registry name
    picture: ClassVar[str | None]  # a column that is the genome as one picture (`afg show`)

    @classmethod
    def layer_arrays(
        cls, columns: Mapping[str, np.ndarray], layers: Sequence[str]
    ) -> dict[str, list[np.ndarray]]:
        """Per layer, its genome arrays [N, ...] from a corpus's columns (spatial maps
        [N, K, S, S] first, where it has them): how `afg show` and `afg afs` read a corpus of
        this encoder. Its card text is `cards/genome/<name>.md`."""
        ...

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


@runtime_checkable
class StatefulEncoder(GenomeEncoder, Protocol):
    """An encoder with fitted state (a basis): fitted on the build's first clean train images,
    saved beside the model (`STATE_FILE`, listed in the manifest) with its atlas picture
    (`ATLAS_FILE`), and loaded by every reader that encodes new images."""

    STATE_FILE: ClassVar[str]
    ATLAS_FILE: ClassVar[str]

    def fit(self, batches: Iterable[Mapping[str, torch.Tensor]]) -> None: ...

    def save_state(self, path: Path) -> None: ...

    def load_state(self, path: Path) -> None: ...

    def atlas(self) -> tuple[np.ndarray, torch.Tensor]:
        """(the picture as uint8 [H, W, C], its rendered tiles)."""
        ...


def stacked_layers(
    columns: Mapping[str, np.ndarray], layers: Sequence[str], names: Sequence[str]
) -> dict[str, list[np.ndarray]]:
    """`layer_arrays` of columns stacked by layer ([N, L, ...], in `names` order)."""
    return {
        layer: [np.asarray(columns[name])[:, i] for name in names] for i, layer in enumerate(layers)
    }
