"""Genome encoders: registry name -> encoder class (activations -> fixed-shape arrays)."""

from afg_datasets.genome.groupmap import GroupMapEncoder
from afg_datasets.registry import Registry

ENCODERS: Registry[type] = Registry("encoder", {"groupmap": GroupMapEncoder})

__all__ = ["ENCODERS", "GroupMapEncoder"]
