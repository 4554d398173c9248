"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays)."""

from afg_datasets.genome.groupmap import GroupMapEncoder
from afg_datasets.registry import Registry

ENCODERS: Registry[type] = Registry("encoder", {"groupmap": GroupMapEncoder})


def encoder_from_manifest(manifest: dict):
    """The exact encoder a corpus was built with (to compute genomes of new images)."""
    genome = manifest["config"]["genome"]
    layers = [layer["name"] for layer in manifest["layers"]]
    channels = [layer["channels"] for layer in manifest["layers"]]
    return ENCODERS[genome["encoder"]](
        layers,
        channels,
        genome["groups"],
        genome["size"],
        genome["nmf_iters"],
        manifest["seeds"]["nmf"],
    )


__all__ = ["ENCODERS", "GroupMapEncoder", "encoder_from_manifest"]
