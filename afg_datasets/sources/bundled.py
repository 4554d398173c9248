"""Small bundled sources held in memory behind the reader interface: digits, MNIST, CIFAR."""

from __future__ import annotations

import logging
import math
import pickle  # noqa: S403 - the CIFAR python-batch format, through a restricted unpickler
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from afg_datasets.bounds import MAX_SOURCE_FILE_BYTES
from afg_datasets.checks import section
from afg_datasets.documents import open_regular, read_bytes
from afg_datasets.errors import SourceError
from afg_datasets.sources.base import Source, SourceConfig, array_source, require_dir, takes

log = logging.getLogger(__name__)


@section("source.")
class BundledConfig(SourceConfig):
    """digits (bundled with scikit-learn; no root), MNIST and CIFAR (their files under root)."""

    name: Literal["digits", "mnist", "cifar10", "cifar100"] = "digits"


@takes(BundledConfig)
def load_digits(cfg: BundledConfig) -> Source:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return array_source(
        cfg,
        images,
        bunch.target,
        name="digits",
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
    raw = read_bytes(path, SourceError, MAX_SOURCE_FILE_BYTES)
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise SourceError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise SourceError(f"{path}: truncated IDX header")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = math.prod(int(d) for d in dims)  # Python ints: no int64 wrap-around
    if data.size != expected:
        raise SourceError(f"{path}: truncated IDX file ({data.size} of {expected} values)")
    return data.reshape(dims)


def _gunzip(raw: bytes, path: Path) -> bytes:
    """A gzip file's content, at most MAX_SOURCE_FILE_BYTES (a small file may unpack to more
    than memory holds: stopped there, never allocated)."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(raw, MAX_SOURCE_FILE_BYTES)
    except zlib.error as err:
        raise SourceError(f"{path}: corrupt or truncated gzip file ({err})") from None
    if inflate.unconsumed_tail:
        raise SourceError(f"{path}: unpacks to more than {MAX_SOURCE_FILE_BYTES} bytes")
    if not inflate.eof:
        raise SourceError(f"{path}: corrupt or truncated gzip file (no end of stream)")
    return data


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


@takes(BundledConfig)
def load_mnist(cfg: BundledConfig) -> Source:
    """MNIST from its IDX files; train then test. With only the test files, uses those alone."""
    root = require_dir(cfg, MNIST_LAYOUT)
    parts = []
    for part in ("train", "t10k"):
        images = _find_idx(root, f"{part}-images-idx3-ubyte")
        labels = _find_idx(root, f"{part}-labels-idx1-ubyte")
        if images and labels:
            pixels, classes = read_idx(images), read_idx(labels)
            if pixels.ndim != 3 or classes.ndim != 1 or len(pixels) != len(classes):
                raise SourceError(
                    f"source 'mnist': {images.name} {pixels.shape} and {labels.name} "
                    f"{classes.shape} are not N images of H x W and N labels"
                )
            parts.append((part, pixels, classes))
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
    return array_source(
        cfg,
        images,
        labels,
        name="mnist",
        class_names=tuple(str(c) for c in range(10)),
        ids=ids,
        license="cc-by-sa-3.0",
        citation="The MNIST database of handwritten digits (LeCun, Cortes, Burges)",
    )


# What a CIFAR python batch may reconstruct: numpy arrays and dtypes inside plain dicts, lists,
# strings and bytes. Anything else (os.system, subprocess, a stranger's class) is refused
# before it is looked up, so a hostile batch never runs code.
CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> dict:
    """A CIFAR python batch (a pickled dict of numpy arrays and lists) through an unpickler
    that admits nothing else; a SourceError naming the file otherwise."""
    try:
        with open_regular(path, SourceError) as handle:
            batch = _CifarUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise SourceError(f"{path}: not a CIFAR python batch ({err})") from None
    if not isinstance(batch, dict):
        raise SourceError(f"{path}: not a CIFAR python batch (a {type(batch).__name__})")
    return batch


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise SourceError(f"{path}: CIFAR batch without {key!r}")
    return batch[key]


def _cifar(
    cfg: SourceConfig, folder: str, train: list[str], label_key: str, meta: tuple[str, str]
) -> Source:
    test = "test" if folder.startswith("cifar-100") else "test_batch"
    names = [*train, test, meta[0]]
    layout = (
        f"expected {folder}/ holding the python batches {', '.join(names)} "
        f"(from {CIFAR_URLS[folder]})"
    )
    root = require_dir(cfg, layout)

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
        path = base / name
        batch = read_cifar_batch(path)
        try:
            data = np.asarray(_field(batch, "data", path), dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
        except (ValueError, TypeError, OverflowError) as err:
            raise SourceError(f"{path}: malformed CIFAR batch ({err})") from None
        if len(labels) != len(data):
            raise SourceError(f"{path}: {len(data)} images but {len(labels)} labels")
        batches.append((data.transpose(0, 2, 3, 1), labels))
        ids += [f"{cfg.name}-{name.replace('_', '')}-{i:05d}" for i in range(len(data))]
    names_path = base / meta[0]
    class_names = tuple(str(c) for c in _field(read_cifar_batch(names_path), meta[1], names_path))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return array_source(
        cfg,
        images,
        labels,
        name=cfg.name,
        class_names=class_names,
        ids=tuple(ids),
        license="unknown",
        citation="Learning Multiple Layers of Features from Tiny Images (Krizhevsky, 2009)",
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


@takes(BundledConfig)
def load_cifar10(cfg: BundledConfig) -> Source:
    """CIFAR-10 in torchvision's python-batch layout under root."""
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _cifar(cfg, "cifar-10-batches-py", train, "labels", ("batches.meta", "label_names"))


@takes(BundledConfig)
def load_cifar100(cfg: BundledConfig) -> Source:
    """CIFAR-100 (fine labels) in torchvision's python-batch layout under root."""
    return _cifar(cfg, "cifar-100-python", ["train"], "fine_labels", ("meta", "fine_label_names"))
