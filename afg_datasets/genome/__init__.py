"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays).

The contract every encoder meets is `genome.base.GenomeEncoder`. An encoder is its module (the
class and its `Config`, a validated section whose `encoder` field is its registry name) plus one
line below. Entries are imported on first use, so the names need no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from afg_datasets.checks import Choice
from afg_datasets.errors import CorpusError
from afg_datasets.genome.base import EncoderInputs, GenomeEncoder, StatefulEncoder
from afg_datasets.layout import format_version
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


def encoder_from_manifest(
    manifest: dict, model=None, state_dir: Path | None = None
) -> GenomeEncoder:
    """The exact encoder a corpus was built with (to compute genomes of new images); an
    encoder with state (a basis) loads it from `state_dir` (the corpus's model folder)."""
    info = manifest.get("model")  # (recognizers saved before 0.2 lack it: groupmap only)
    inputs = EncoderInputs(
        tuple(layer["name"] for layer in manifest["layers"]),
        tuple(layer["channels"] for layer in manifest["layers"]),
        manifest["seeds"]["nmf"],
        model,
        (info["in_channels"], info["image_size"]) if info else None,
        # Layer sizes from format 1.4 (before it, `activations` pooled every layer to `size`).
        tuple(layer["height"] for layer in manifest["layers"])
        if format_version(manifest) >= (1, 4)
        else (),
    )
    encoder = make_encoder(manifest["config"]["genome"], inputs)
    if isinstance(encoder, StatefulEncoder):
        if state_dir is None:
            raise CorpusError(f"the {encoder.name} encoder needs its corpus's model folder")
        encoder.load_state(state_dir / encoder.STATE_FILE)
    return encoder


__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "GENOME",
    "EncoderInputs",
    "GenomeEncoder",
    "StatefulEncoder",
    "encoder_from_manifest",
    "make_encoder",
]
