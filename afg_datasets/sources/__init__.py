"""Source images: registry name -> loader returning a `Source` (an index plus a pixel reader)."""

from __future__ import annotations

from collections.abc import Callable

from afg_datasets.registry import Registry
from afg_datasets.sources.base import (
    Decoded,
    ImageReader,
    Source,
    SourceConfig,
    default_loader_workers,
    resize_uint8,
    stable_id,
)
from afg_datasets.sources.bundled import (
    load_cifar10,
    load_cifar100,
    load_digits,
    load_mnist,
    read_idx,
)
from afg_datasets.sources.folders import IMAGE_SUFFIXES, load_hf, load_imagefolder
from afg_datasets.sources.shards import load_wds

SOURCES: Registry[Callable[[SourceConfig], Source]] = Registry(
    "source",
    {
        "digits": load_digits,
        "mnist": load_mnist,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "imagefolder": load_imagefolder,
        "hf": load_hf,
        "wds": load_wds,
    },
)


def load_source(cfg: SourceConfig) -> Source:
    """The index of `cfg`'s source; pixels are decoded later, by `Source.read`."""
    return SOURCES[cfg.name](cfg)


__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCES",
    "Decoded",
    "ImageReader",
    "Source",
    "SourceConfig",
    "default_loader_workers",
    "load_source",
    "read_idx",
    "resize_uint8",
    "stable_id",
]
