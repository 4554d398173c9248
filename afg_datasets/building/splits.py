"""Split assignment by source id: an original and all its adversarial versions share a split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np


def split_of(source_id: str, seed: int, ratios: Mapping[str, float]) -> str:
    """Deterministic split from (seed, source_id), independent of which other images exist."""
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, ratio in ratios.items():
        cumulative += ratio
        if u < cumulative:
            return name
    return list(ratios)[-1]


def assign_splits(ids: Iterable[str], seed: int, ratios: Mapping[str, float]) -> np.ndarray:
    return np.array([split_of(i, seed, ratios) for i in ids])
