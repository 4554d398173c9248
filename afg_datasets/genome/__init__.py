"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays).

The contract every encoder meets is `genome.base.GenomeEncoder`. An encoder is its module (the
class and its `Config`, a validated section whose `encoder` field is its registry name) plus one
line below. Entries are imported on first use, so the names need no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from afg_datasets.checks import from_mapping
from afg_datasets.errors import ConfigError, CorpusError
from afg_datasets.genome.base import EncoderInputs, GenomeEncoder
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


def setting_names(encoder: str) -> list[str]:
    """The settings encoder `encoder`'s `Config` declares (its `encoder` field first)."""
    return [f.name for f in fields(ENCODERS[encoder].Config)]


def genome_config(data: Any) -> Any:
    """The `genome` section: the `Config` of the encoder its `encoder` key names, validated
    once. A key that is not a setting of that encoder is refused by name."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"genome must be a mapping, got {data!r}")
    name = data.get("encoder", DEFAULT_ENCODER)
    names = setting_names(name)
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise ConfigError(
            f"{', '.join('genome.' + k for k in unknown)}: not a setting of the {name!r} "
            f"encoder; its settings: {', '.join(names)}"
        )
    return from_mapping(ENCODERS[name].Config, {**data, "encoder": name}, "genome.")


def default_genome() -> Any:
    return genome_config({})


def updated(config: Any, changes: Mapping[str, Any]) -> Any:
    """`config` with `changes`; a change of `encoder` keeps the settings both encoders have
    (the others take the new encoder's defaults, or a value in `changes`)."""
    name = changes.get("encoder", config.encoder)
    kept = {k: v for k, v in asdict(config).items() if k in setting_names(name)}
    return genome_config({**kept, **changes, "encoder": name})


def make_encoder(config: Any, inputs: EncoderInputs) -> GenomeEncoder:
    """The encoder of a genome section (its `Config`, or a mapping such as a manifest's)."""
    if isinstance(config, Mapping):
        config = genome_config(config)
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
    )
    encoder = make_encoder(manifest["config"]["genome"], inputs)
    if hasattr(encoder, "load_state"):
        if state_dir is None:
            raise CorpusError(f"the {encoder.name} encoder needs its corpus's model folder")
        encoder.load_state(state_dir / encoder.STATE_FILE)
    return encoder


__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderInputs",
    "GenomeEncoder",
    "default_genome",
    "encoder_from_manifest",
    "genome_config",
    "make_encoder",
    "setting_names",
    "updated",
]
