"""Source images: registry name -> loader returning uint8 images with stable ids."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import pickle  # noqa: S403 - only for the CIFAR python-batch format of the user's own files
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from afg_datasets.errors import ConfigError, SourceError
from afg_datasets.registry import Registry

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BAD_IMAGE_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class SourceConfig:
    """Where the source images come from and how they are made uniform."""

    name: str = "digits"
    root: str | None = None  # directory (mnist, cifar, imagefolder) or dataset dir / repo id (hf)
    image_size: int = 32  # final square size
    resize: int | None = None  # imagefolder: shorter side before the centre crop
    on_bad_image: str = "error"  # imagefolder: error | skip
    split: str = "train"  # hf: which split of the dataset
    image_column: str = "image"  # hf
    label_column: str = "label"  # hf

    def __post_init__(self):
        SOURCES[self.name]
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ConfigError(
                f"source.image_size must be a positive integer, got {self.image_size!r}"
            )
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(
                f"source.on_bad_image must be one of {BAD_IMAGE_POLICIES}, "
                f"got {self.on_bad_image!r}"
            )


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
    skipped: tuple[str, ...] = ()  # unreadable inputs left out (on_bad_image: skip)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    def head(self, limit: int | None) -> Source:
        """The first `limit` images (all when None), in source order."""
        if limit is None or limit >= len(self):
            return self
        return dataclasses.replace(
            self, images=self.images[:limit], labels=self.labels[:limit], ids=self.ids[:limit]
        )


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N, H, W, C] images to size x size with antialiased bilinear interpolation."""
    if images.shape[1] == images.shape[2] == size:
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _require_dir(cfg: SourceConfig, layout: str) -> Path:
    if cfg.root is None:
        raise SourceError(f"source {cfg.name!r} needs a root directory (--source-root): {layout}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise SourceError(f"source {cfg.name!r}: root {str(root)!r} is not a directory; {layout}")
    return root


def load_digits(cfg: SourceConfig) -> Source:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return Source(
        name="digits",
        images=resize_uint8(images, cfg.image_size),
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(c) for c in range(10)),
        ids=tuple(f"digits-{i:05d}" for i in range(len(images))),
        license="cc-by-4.0",
        citation="UCI ML hand-written digits (Alpaydin & Kaynak, 1998), via scikit-learn",
    )


MNIST_LAYOUT = (
    "expected the IDX files t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
    "(and optionally train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz])"
)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip-compressed or not) as a numpy array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise SourceError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SourceError(f"{path}: truncated IDX file ({data.size} of {np.prod(dims)} values)")
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


def load_mnist(cfg: SourceConfig) -> Source:
    """MNIST from its IDX files; train then test. With only the test files, uses those alone."""
    root = _require_dir(cfg, MNIST_LAYOUT)
    parts = []
    for part in ("train", "t10k"):
        images = _find_idx(root, f"{part}-images-idx3-ubyte")
        labels = _find_idx(root, f"{part}-labels-idx1-ubyte")
        if images and labels:
            parts.append((part, read_idx(images), read_idx(labels)))
    if not parts:
        raise SourceError(f"source 'mnist': no IDX files in {str(root)!r}; {MNIST_LAYOUT}")
    if [p[0] for p in parts] == ["t10k"]:
        log.warning(
            "mnist: only the 10,000-image test set found in %s; using it as the whole "
            "source (the corpus's own train/validation/test split applies)",
            root,
        )
    images = np.concatenate([p[1] for p in parts])[..., None]
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64)
    ids = tuple(f"mnist-{part}-{i:05d}" for part, imgs, _ in parts for i in range(len(imgs)))
    return Source(
        "mnist",
        resize_uint8(images, cfg.image_size),
        labels,
        tuple(str(c) for c in range(10)),
        ids,
        "cc-by-sa-3.0",
        "The MNIST database of handwritten digits (LeCun, Cortes, Burges)",
    )


def _cifar(
    cfg: SourceConfig, folder: str, train: list[str], label_key: str, meta: tuple[str, str]
) -> Source:
    test = "test" if folder.startswith("cifar-100") else "test_batch"
    names = [*train, test, meta[0]]
    layout = (
        f"expected {folder}/ holding the python batches {', '.join(names)} "
        f"(from {CIFAR_URLS[folder]})"
    )
    root = _require_dir(cfg, layout)

    def missing() -> list[Path]:
        base = root / folder if (root / folder).is_dir() else root
        return [base / n for n in names if not (base / n).is_file()]

    if missing() and not _download_cifar(root, folder):
        raise SourceError(
            f"source {cfg.name!r}: missing {missing()[0]} and it could not be downloaded; {layout}"
        )
    base = root / folder if (root / folder).is_dir() else root
    batches, ids = [], []
    for name in [*train, test]:
        with open(base / name, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")  # noqa: S301 - the format is pickle
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        batches.append((data.transpose(0, 2, 3, 1), np.asarray(batch[label_key], dtype=np.int64)))
        ids += [f"{cfg.name}-{name.replace('_', '')}-{i:05d}" for i in range(len(data))]
    with open(base / meta[0], "rb") as handle:
        class_names = tuple(pickle.load(handle, encoding="latin1")[meta[1]])  # noqa: S301
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return Source(
        cfg.name,
        resize_uint8(images, cfg.image_size),
        labels,
        class_names,
        tuple(ids),
        "unknown",
        "Learning Multiple Layers of Features from Tiny Images (Krizhevsky, 2009)",
    )


CIFAR_URLS = {
    "cifar-10-batches-py": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar-100-python": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


def _download_cifar(root: Path, folder: str) -> bool:
    """Fetch and unpack the archive through torchvision where the network allows."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(CIFAR_URLS[folder], download_root=str(root))
    except Exception as err:  # noqa: BLE001 - any network failure means: tell the user where
        log.warning("could not download %s: %s", folder, err)
        return False
    return (root / folder).is_dir()


def load_cifar10(cfg: SourceConfig) -> Source:
    """CIFAR-10 in torchvision's python-batch layout under root."""
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _cifar(cfg, "cifar-10-batches-py", train, "labels", ("batches.meta", "label_names"))


def load_cifar100(cfg: SourceConfig) -> Source:
    """CIFAR-100 (fine labels) in torchvision's python-batch layout under root."""
    return _cifar(cfg, "cifar-100-python", ["train"], "fine_labels", ("meta", "fine_label_names"))


def stable_id(prefix: str, relative: str) -> str:
    """Lowercase, dot-free id from a relative path, unique through a short hash of the path."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", relative.lower()).strip("-")
    return f"{prefix}-{slug}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}"


def _square(image: Image.Image, resize: int | None, size: int) -> np.ndarray:
    """Resize the shorter side to `resize` (default: size), centre-crop size x size."""
    image = image.convert("RGB")
    short = resize or size
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
    )
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_imagefolder(cfg: SourceConfig) -> Source:
    """ImageNet-style `root/<class>/<image>` folders; class names from folder names."""
    layout = "expected one sub-folder per class holding image files"
    root = _require_dir(cfg, layout)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SourceError(f"source 'imagefolder': no class folders in {str(root)!r}; {layout}")
    images, labels, ids, skipped = [], [], [], []
    for label, name in enumerate(classes):
        for path in sorted(
            p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        ):
            relative = path.relative_to(root).as_posix()
            try:
                with Image.open(path) as image:
                    images.append(_square(image, cfg.resize, cfg.image_size))
            except (OSError, UnidentifiedImageError, ValueError) as err:
                if cfg.on_bad_image == "error":
                    raise SourceError(
                        f"unreadable image {path}: {err} "
                        "(set source.on_bad_image: skip to leave it out)"
                    ) from None
                log.warning("skipping unreadable image %s: %s", path, err)
                skipped.append(relative)
                continue
            labels.append(label)
            ids.append(stable_id("img", relative))
    if not images:
        raise SourceError(f"source 'imagefolder': no readable images under {str(root)!r}")
    return Source(
        "imagefolder",
        np.stack(images),
        np.array(labels, dtype=np.int64),
        tuple(classes),
        tuple(ids),
        "unknown",
        f"image folder {root.name}",
        tuple(skipped),
    )


def load_hf(cfg: SourceConfig) -> Source:
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
    labels = np.asarray(dataset[cfg.label_column], dtype=np.int64)
    if isinstance(label_feature, ClassLabel):
        class_names = tuple(label_feature.names)
    else:
        class_names = tuple(str(c) for c in range(int(labels.max()) + 1))
    images = np.stack(
        [_square(img, cfg.resize, cfg.image_size) for img in dataset[cfg.image_column]]
    )
    prefix = re.sub(r"[^a-z0-9]+", "-", Path(cfg.root).name.lower()).strip("-") or "hf"
    ids = tuple(f"{prefix}-{cfg.split}-{i:07d}" for i in range(len(images)))
    return Source(
        "hf", images, labels, class_names, ids, "unknown", f"Hugging Face dataset {cfg.root}"
    )


SOURCES: Registry[Callable[[SourceConfig], Source]] = Registry(
    "source",
    {
        "digits": load_digits,
        "mnist": load_mnist,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "imagefolder": load_imagefolder,
        "hf": load_hf,
    },
)


def load_source(cfg: SourceConfig) -> Source:
    return SOURCES[cfg.name](cfg)
