"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays).

The contract every encoder meets is `genome.base.GenomeEncoder`. An encoder is its module (the
class and its `Config`, a validated section whose `encoder` field is its registry name) plus one
line below. Entries are imported on first use, so the names need no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afg_datasets.checks import Choice
from afg_datasets.genome.base import EncoderInputs, GenomeEncoder, StatefulEncoder
from afg_datasets.registry import Registry

ENCODERS: Registry[type[GenomeEncoder]] = Registry(
    "encoder",
    {
        "groupmap": "afg_datasets.genome.groupmap:GroupMapEncoder",
        "groupviz": "afg_datasets.genome.groupviz:GroupVizEncoder",
        "activations": "afg_datasets.genome.activations:ActivationsEncoder",
        "groupbasis": "afg_datasets.genome.groupbasis:GroupBasisEncoder",
    },
)
DEFAULT_ENCODER = "groupmap"


# The build config's `genome` section: the chosen encoder's own `Config`.
GENOME = Choice(ENCODERS, "encoder", DEFAULT_ENCODER, "genome.")


def make_encoder(config: Any, inputs: EncoderInputs) -> GenomeEncoder:
    """The encoder of a genome section (its `Config`, or a mapping such as a manifest's, read as
    recorded: older formats' sections too)."""
    if isinstance(config, Mapping):
        config = GENOME.parse(GENOME.recorded(config))
    return ENCODERS[config.encoder](config, inputs)


__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "GENOME",
    "EncoderInputs",
    "GenomeEncoder",
    "StatefulEncoder",
    "make_encoder",
]
