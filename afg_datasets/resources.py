"""Locate the builder configs and card templates shipped with the package, and the cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """`builders` or `cards`: inside an installed wheel, else the source checkout's top level."""
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} not found next to {_PACKAGE}")


def cache_root() -> Path:
    """Where trained target models and fetched Hub corpora are cached (AFG_CACHE_DIR, else
    ~/.cache/afg-datasets)."""
    env = os.environ.get("AFG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "afg-datasets"
