"""The source contract: an index (ids, labels, class names; known without decoding a pixel)
plus a reader that decodes any range of items on demand, so a build's memory and start-up do not
grow with the source."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from afg_datasets.bounds import MAX_IMAGE_SIZE
from afg_datasets.checks import bounded, section
from afg_datasets.errors import ConfigError, SourceError
from afg_datasets.images import to_rgb

log = logging.getLogger(__name__)

L = TypeVar("L", bound=Callable)

# What a broken, truncated or oversized (decompression bomb) image raises while decoding.
# An item that cannot be decoded, or not read as a regular bounded file (SourceError from
# documents.open_regular / read_bytes): a bad image, handled by source.on_bad_image.
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    Image.DecompressionBombError,
    SourceError,
)


@section("source.")
class SourceConfig:
    """What every source has. A source's own `Config` extends it (its `name` a `Literal` of its
    registry name) and is the build config's `source` section when that source is chosen."""

    name: str = "digits"
    root: str | None = None  # where the data is (each source's Config says what it takes)
    image_size: bounded(MAX_IMAGE_SIZE) = 32  # final square size
    workers: Annotated[int, Field(ge=0, le=64)] | None = None  # decoding processes per build
    # process; None: from the CPU count. An execution setting: never changes a byte, so it is
    # left out of the config hash.


@section("source.")
class DecodedConfig(SourceConfig):
    """Sources that decode image files (any size and mode) into uniform squares."""

    resize: bounded(MAX_IMAGE_SIZE) | None = None  # shorter side, then a centre crop
    on_bad_image: Literal["error", "skip"] = "error"  # decided per task

    def __post_init__(self):
        if self.resize is not None and self.resize < self.image_size:
            raise ConfigError(
                f"source.resize ({self.resize}) must be at least source.image_size "
                f"({self.image_size}): the shorter side is resized, then centre-cropped"
            )


def takes(config: type) -> Callable[[L], L]:
    """Declare the settings a source loader takes: `config` (its `Config`)."""

    def mark(load: L) -> L:
        load.Config = config
        return load

    return mark


def default_loader_workers() -> int:
    """Decoding processes per build process: half the CPUs this process may use, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(8, max(1, (cpus or 1) // 2))


@dataclass(frozen=True)
class Decoded:
    """What a reader returns for some items: the readable ones' pixels and positions, and for
    each unreadable one its id and a description naming the file and the error."""

    images: np.ndarray  # uint8 [k, H, W, C]
    kept: np.ndarray  # int64 [k]: source indices of `images`
    bad: tuple[tuple[str, str], ...] = ()


class ImageReader(Protocol):
    """Decodes items of a source by index. Must be picklable (loader workers get a copy)."""

    decodes: bool  # True when reading costs decoding work (worth loader worker processes)

    def read(self, indices: np.ndarray) -> Decoded: ...


@dataclass(frozen=True)
class ArrayReader:
    """A small bundled source already in memory (digits, MNIST, CIFAR)."""

    images: np.ndarray
    decodes: bool = False

    def read(self, indices: np.ndarray) -> Decoded:
        indices = np.asarray(indices, dtype=np.int64)
        return Decoded(self.images[indices], indices)


class DecodingReader:
    """Decodes one encoded image per item, squared to `size`; a subclass says how to open item
    i (`open_item`) and how to name it in an error (`describe`)."""

    decodes = True

    def __init__(self, ids: tuple[str, ...], size: int, resize: int | None, channels: int = 3):
        self.ids, self.size, self.resize, self.channels = ids, size, resize, channels

    def open_item(self, index: int) -> Image.Image:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        raise NotImplementedError

    def read(self, indices: np.ndarray) -> Decoded:
        images, kept, bad = [], [], []
        for index in np.asarray(indices, dtype=np.int64).tolist():
            try:
                with self.open_item(index) as image:
                    images.append(square(image, self.resize, self.size))
            except DECODE_ERRORS as err:
                bad.append((self.ids[index], f"{self.describe(index)}: {err}"))
                continue
            kept.append(index)
        shape = (len(images), self.size, self.size, self.channels)
        pixels = np.stack(images) if images else np.zeros(shape, dtype=np.uint8)
        return Decoded(pixels, np.array(kept, dtype=np.int64), tuple(bad))


def open_bytes(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@dataclass(frozen=True)
class Source:
    """A labelled image collection: an index known at setup plus a reader for its pixels."""

    name: str
    labels: np.ndarray  # int64 [N]
    class_names: tuple[str, ...]
    ids: tuple[str, ...]  # stable and unique
    license: str
    citation: str
    reader: ImageReader
    channels: int
    image_size: int
    on_bad_image: str = "error"

    def __post_init__(self):
        labels, classes = self.labels, len(self.class_names)
        if labels.ndim != 1 or len(labels) != len(self.ids):
            raise SourceError(
                f"source {self.name!r}: {len(self.ids)} items but labels of shape {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise SourceError(
                f"source {self.name!r}: labels must be in 0..{classes - 1} ({classes} classes), "
                f"found {int(labels.min())}..{int(labels.max())}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, limit: int | None) -> Source:
        """The first `limit` items (all when None), in source order; nothing is decoded."""
        if limit is None or limit >= len(self):
            return self
        return dataclasses.replace(self, labels=self.labels[:limit], ids=self.ids[:limit])

    def read(self, indices: np.ndarray) -> Decoded:
        """Decode items, applying the bad-image policy (see `check`)."""
        decoded = self.reader.read(np.asarray(indices, dtype=np.int64))
        self.check(decoded)
        return decoded

    def check(self, decoded: Decoded) -> tuple[str, ...]:
        """Apply on_bad_image to what a reader found unreadable: `error` raises naming the
        file; `skip` logs it. Returns the ids left out."""
        for _, problem in decoded.bad:
            if self.on_bad_image == "error":
                raise SourceError(
                    f"unreadable image {problem} (set source.on_bad_image: skip to leave it out)"
                )
            log.warning("skipping unreadable image %s", problem)
        return tuple(item_id for item_id, _ in decoded.bad)

    def tensors(self, indices: np.ndarray, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Float [0,1] NCHW images and their labels, decoded `batch` items at a time."""
        xs, ys = [], []
        for start in range(0, len(indices), batch):
            decoded = self.read(indices[start : start + batch])
            xs.append(torch.from_numpy(decoded.images).permute(0, 3, 1, 2).float().div(255))
            ys.append(torch.from_numpy(self.labels[decoded.kept]))
        if not xs:
            return torch.zeros(0, self.channels, self.image_size, self.image_size), torch.zeros(
                0, dtype=torch.int64
            )
        return torch.cat(xs), torch.cat(ys)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N, H, W, C] images to size x size with antialiased bilinear interpolation."""
    if images.shape[1] == images.shape[2] == size:
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def square(image: Image.Image, resize: int | None, size: int) -> np.ndarray:
    """RGB; the shorter side resized to `resize` (default: size), centre-cropped size x size."""
    image = to_rgb(image)
    short = resize or size
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
    )
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def stable_id(prefix: str, relative: str) -> str:
    """Lowercase, dot-free id from a relative path, unique through a short hash of the path."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", relative.lower()).strip("-")
    return f"{prefix}-{slug}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}"


def require_dir(cfg: SourceConfig, layout: str) -> Path:
    if cfg.root is None:
        raise SourceError(f"source {cfg.name!r} needs a root directory (--source-root): {layout}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise SourceError(f"source {cfg.name!r}: root {str(root)!r} is not a directory; {layout}")
    return root


def array_source(cfg: SourceConfig, images: np.ndarray, labels: np.ndarray, **index) -> Source:
    """A bundled in-memory source, resized to the configured size."""
    images = resize_uint8(images, cfg.image_size)
    return Source(
        labels=labels.astype(np.int64),
        reader=ArrayReader(images),
        channels=int(images.shape[-1]),
        image_size=cfg.image_size,
        **index,
    )
