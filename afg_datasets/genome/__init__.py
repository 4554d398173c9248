"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays).

The contract every encoder meets is `genome.base.GenomeEncoder`.
"""

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from afg_datasets.errors import CorpusError
from afg_datasets.genome.activations import ActivationsEncoder
from afg_datasets.genome.base import EncoderInputs, GenomeEncoder
from afg_datasets.genome.groupbasis import GroupBasisEncoder
from afg_datasets.genome.groupmap import GroupMapEncoder
from afg_datasets.genome.groupviz import GroupVizEncoder
from afg_datasets.registry import Registry

ENCODERS: Registry[type[GenomeEncoder]] = Registry(
    "encoder",
    {
        "groupmap": GroupMapEncoder,
        "groupviz": GroupVizEncoder,
        "activations": ActivationsEncoder,
        "groupbasis": GroupBasisEncoder,
    },
)


def make_encoder(genome: Mapping, inputs: EncoderInputs) -> GenomeEncoder:
    """The encoder a genome config section names, with the settings its `Config` declares."""
    cls = ENCODERS[genome["encoder"]]
    names = {f.name for f in fields(cls.Config)}
    return cls(cls.Config(**{k: v for k, v in genome.items() if k in names}), inputs)


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
    )
    encoder = make_encoder(manifest["config"]["genome"], inputs)
    if hasattr(encoder, "load_state"):
        if state_dir is None:
            raise CorpusError(f"the {encoder.name} encoder needs its corpus's model folder")
        encoder.load_state(state_dir / encoder.STATE_FILE)
    return encoder


__all__ = [
    "ENCODERS",
    "EncoderInputs",
    "GenomeEncoder",
    "GroupMapEncoder",
    "GroupVizEncoder",
    "encoder_from_manifest",
    "make_encoder",
]
