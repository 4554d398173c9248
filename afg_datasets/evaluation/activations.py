"""The one way evaluation code recomputes a corpus model's activations from stored images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from afg_datasets.models import TargetModel, forward_with_taps

BATCH = 256


def layer_activations(
    model: TargetModel, images: np.ndarray, layers: Sequence[str], pool: bool = False
) -> list[np.ndarray]:
    """Per layer, [N, D] activations of uint8 [N, C, H, W] images: flattened, or
    global-average-pooled over space (`pool`, D = channels)."""
    chunks: list[list[np.ndarray]] = [[] for _ in layers]
    for start in range(0, len(images), BATCH):
        x = torch.from_numpy(images[start : start + BATCH]).float().div(255)
        _, acts = forward_with_taps(model, layers, x)
        for i, layer in enumerate(layers):
            act = acts[layer].flatten(2)
            chunks[i].append((act.mean(2) if pool else act.flatten(1)).numpy())
    return [np.concatenate(c) for c in chunks]
