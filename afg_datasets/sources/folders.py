"""Decoded sources: an image folder (files listed at setup, decoded per task) and a Hugging Face
dataset (Arrow, memory-mapped; rows decoded per task)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from afg_datasets.bounds import MAX_IMAGE_FILE_BYTES
from afg_datasets.checks import section
from afg_datasets.documents import read_bytes
from afg_datasets.errors import SourceError
from afg_datasets.sources.base import (
    DecodedConfig,
    DecodingReader,
    Source,
    open_bytes,
    require_dir,
    stable_id,
    takes,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class FileReader(DecodingReader):
    """Items are image files under a root."""

    def __init__(self, root: Path, relative: tuple[str, ...], ids, size, resize):
        super().__init__(ids, size, resize)
        self.root, self.relative = root, relative

    def open_item(self, index: int) -> Image.Image:
        path = self.root / self.relative[index]
        return open_bytes(read_bytes(path, SourceError, MAX_IMAGE_FILE_BYTES))

    def describe(self, index: int) -> str:
        return str(self.root / self.relative[index])


def list_images(folder: Path) -> list[str]:
    """Image files under `folder` (any depth), as sorted paths relative to it."""
    found = []
    for directory, _, files in os.walk(folder):
        base = os.path.relpath(directory, folder)
        found += [
            os.path.normpath(os.path.join(base, f))
            for f in files
            if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
        ]
    return [Path(f).as_posix() for f in sorted(found, key=lambda f: Path(f).parts)]


@section("source.")
class ImageFolderConfig(DecodedConfig):
    """`root/<class>/<image>` folders."""

    name: Literal["imagefolder"] = "imagefolder"


@takes(ImageFolderConfig)
def load_imagefolder(cfg: ImageFolderConfig) -> Source:
    """ImageNet-style `root/<class>/<image>` folders; lists files, decodes nothing."""
    layout = "expected one sub-folder per class holding image files"
    root = require_dir(cfg, layout)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SourceError(f"source 'imagefolder': no class folders in {str(root)!r}; {layout}")
    relative, labels = [], []
    for label, name in enumerate(classes):
        files = [f"{name}/{f}" for f in list_images(root / name)]
        relative += files
        labels += [label] * len(files)
    if not relative:
        raise SourceError(f"source 'imagefolder': no image files under {str(root)!r}")
    ids = tuple(stable_id("img", r) for r in relative)
    return Source(
        name="imagefolder",
        labels=np.array(labels, dtype=np.int64),
        class_names=tuple(classes),
        ids=ids,
        license="unknown",
        citation=f"image folder {root.name}",
        reader=FileReader(root, tuple(relative), ids, cfg.image_size, cfg.resize),
        channels=3,
        image_size=cfg.image_size,
        on_bad_image=cfg.on_bad_image,
    )


class ArrowReader(DecodingReader):
    """Items are rows of a (memory-mapped) Hugging Face dataset; only the read rows decode."""

    def __init__(self, dataset: Any, column: str, name: str, ids, size, resize):
        super().__init__(ids, size, resize)
        self.dataset, self.column, self.name = dataset, column, name

    def open_item(self, index: int) -> Image.Image:
        return self.dataset[index][self.column]

    def describe(self, index: int) -> str:
        return f"{self.name} row {index}"


@section("source.")
class HFConfig(DecodedConfig):
    """A Hugging Face dataset: root is a dataset directory or a Hub repo id."""

    name: Literal["hf"] = "hf"
    split: str = "train"  # which split of the dataset
    image_column: str = "image"
    label_column: str = "label"


@takes(HFConfig)
def load_hf(cfg: HFConfig) -> Source:
    """A Hugging Face image-classification dataset (directory or repo id) via load_dataset."""
    from datasets import ClassLabel, load_dataset

    if not cfg.root:
        raise SourceError("source 'hf' needs --source-root: a dataset directory or a Hub repo id")
    try:
        dataset = load_dataset(cfg.root, split=cfg.split)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise SourceError(
            f"source 'hf': cannot load {cfg.root!r} split {cfg.split!r}: {err}"
        ) from None
    missing = [c for c in (cfg.image_column, cfg.label_column) if c not in dataset.column_names]
    if missing:
        raise SourceError(
            f"source 'hf': {cfg.root!r} has no column(s) {missing}; columns: "
            f"{dataset.column_names} (set source.image_column / label_column)"
        )
    label_feature = dataset.features[cfg.label_column]
    labels = np.asarray(dataset.with_format("numpy")[cfg.label_column], dtype=np.int64)
    if isinstance(label_feature, ClassLabel):
        class_names = tuple(label_feature.names)
    else:
        class_names = tuple(str(c) for c in range(int(labels.max()) + 1))
    prefix = re.sub(r"[^a-z0-9]+", "-", Path(cfg.root).name.lower()).strip("-") or "hf"
    ids = tuple(f"{prefix}-{cfg.split}-{i:07d}" for i in range(len(labels)))
    name = f"{cfg.root!r} split {cfg.split!r}"
    return Source(
        name="hf",
        labels=labels,
        class_names=class_names,
        ids=ids,
        license="unknown",
        citation=f"Hugging Face dataset {cfg.root}",
        reader=ArrowReader(dataset, cfg.image_column, name, ids, cfg.image_size, cfg.resize),
        channels=3,
        image_size=cfg.image_size,
        on_bad_image=cfg.on_bad_image,
    )
