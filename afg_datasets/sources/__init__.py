"""Source images: registry name -> loader returning a `Source` (an index plus a pixel reader).

A source is its module (a loader marked `@takes(ItsConfig)`, the `Config` a `SourceConfig`
whose `name` is its registry name) plus one line below. Entries are imported on first use, so
the names need no torch.
"""

from __future__ import annotations

from typing import Any

from afg_datasets.checks import Choice
from afg_datasets.registry import Registry

SOURCES: Registry[Any] = Registry(
    "source",
    {
        "digits": "afg_datasets.sources.bundled:load_digits",
        "mnist": "afg_datasets.sources.bundled:load_mnist",
        "cifar10": "afg_datasets.sources.bundled:load_cifar10",
        "cifar100": "afg_datasets.sources.bundled:load_cifar100",
        "imagefolder": "afg_datasets.sources.folders:load_imagefolder",
        "hf": "afg_datasets.sources.folders:load_hf",
        "wds": "afg_datasets.sources.shards:load_wds",
    },
)

# The build config's `source` section: the chosen source's own `Config`.
SOURCE = Choice(SOURCES, "name", "digits", "source.")


def source_config(name: str, **settings: Any) -> Any:
    """The validated `Config` of source `name` with `settings`."""
    return SOURCE.parse({"name": name, **settings})


def load_source(cfg: Any) -> Any:
    """The index (a `sources.base.Source`) of `cfg`'s source; pixels are decoded later, by
    `Source.read`."""
    return SOURCES[cfg.name](cfg)


__all__ = ["SOURCE", "SOURCES", "load_source", "source_config"]
