"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays)."""

from collections.abc import Mapping, Sequence

from afg_datasets.genome.groupmap import GroupMapEncoder
from afg_datasets.genome.groupviz import GroupVizEncoder
from afg_datasets.registry import Registry

ENCODERS: Registry[type] = Registry(
    "encoder", {"groupmap": GroupMapEncoder, "groupviz": GroupVizEncoder}
)
# Columns that are pictures of a genome, not model inputs.
DISPLAY_COLUMNS = ("genome_mosaic",)


def make_encoder(
    genome: Mapping,
    layers: Sequence[str],
    channels: Sequence[int],
    seed: int,
    model=None,
    image_shape: tuple[int, int] | None = None,
):
    """The encoder a genome config names; `model` and `image_shape` (channels, size) are
    needed by encoders that render images."""
    return ENCODERS[genome["encoder"]].from_config(
        genome, layers, channels, seed, model, image_shape
    )


def encoder_from_manifest(manifest: dict, model=None):
    """The exact encoder a corpus was built with (to compute genomes of new images)."""
    info = manifest.get("model")  # (recognizers saved before 0.2 lack it: groupmap only)
    return make_encoder(
        manifest["config"]["genome"],
        [layer["name"] for layer in manifest["layers"]],
        [layer["channels"] for layer in manifest["layers"]],
        manifest["seeds"]["nmf"],
        model,
        (info["in_channels"], info["image_size"]) if info else None,
    )


def genome_inputs(columns: Sequence[str]) -> list[str]:
    """The genome arrays among `columns` (what a recognizer reads)."""
    return [c for c in columns if c.startswith("genome_") and c not in DISPLAY_COLUMNS]


__all__ = [
    "ENCODERS",
    "GroupMapEncoder",
    "GroupVizEncoder",
    "encoder_from_manifest",
    "genome_inputs",
    "make_encoder",
]
