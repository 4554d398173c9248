"""Source images: registry name -> loader returning uint8 images with stable ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from afg_datasets.registry import Registry


@dataclass(frozen=True)
class Source:
    """A labelled image collection. `images` is uint8 [N, H, W, C]; ids are stable and unique."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: tuple[str, ...]
    license: str
    citation: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    def head(self, limit: int | None) -> Source:
        """The first `limit` images (all when None), in source order."""
        if limit is None or limit >= len(self):
            return self
        return Source(
            self.name,
            self.images[:limit],
            self.labels[:limit],
            self.class_names,
            self.ids[:limit],
            self.license,
            self.citation,
        )


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N, H, W, C] images to size x size with antialiased bilinear interpolation."""
    if images.shape[1] == images.shape[2] == size:
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def load_digits(root: str | None, image_size: int) -> Source:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return Source(
        name="digits",
        images=resize_uint8(images, image_size),
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(c) for c in range(10)),
        ids=tuple(f"digits-{i:05d}" for i in range(len(images))),
        license="cc-by-4.0",
        citation="UCI ML hand-written digits (Alpaydin & Kaynak, 1998), via scikit-learn",
    )


SOURCES: Registry[Callable[[str | None, int], Source]] = Registry("source", {"digits": load_digits})


def load_source(name: str, root: str | None, image_size: int) -> Source:
    return SOURCES[name](root, image_size)
