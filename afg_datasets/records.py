"""The corpus's public record schema (datasets.Features), keys, mixed labels, and one batch of
records as the build hands it to every output format."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from datasets import ClassLabel, Features, Image, List, Value

from afg_datasets.images import encode_png

CLEAN = "clean"
# Columns that are pictures of a genome, not model inputs.
DISPLAY_COLUMNS = ("genome_mosaic",)

# Documented in the dataset card; order is the column order of every parquet file.
FIELD_DOCS = {
    "key": "Unique record key `<source_id>-<attack>` (lowercase, no dots).",
    "source_id": "Stable id of the source image; all records of one source share a split.",
    "image": "The stored image (PNG, uint8): the clean source or its quantized adversarial "
    "version.",
    "label": "Original (true) class of the source image.",
    "pred": "Target model's prediction on `image` as stored (after uint8 quantization).",
    "is_adversarial": "True for attacked images, False for clean originals.",
    "attack": "Attack name, `clean` for originals.",
    "attack_params": "Attack parameters as canonical JSON (`{}` for clean).",
    "success": "Adversarial records: `pred != label`; null for clean records.",
    "linf": "L-infinity distance to the clean source in [0,1] pixel units (0 for clean).",
    "l2": "L2 distance to the clean source in [0,1] pixel units (0 for clean).",
    "mixed_label": "Multi-hot, length num_classes + 1: original class, predicted class, "
    "and a last flag = is_adversarial.",
}


def genome_inputs(columns: Sequence[str]) -> list[str]:
    """The genome arrays among `columns` (what a recognizer reads)."""
    return [c for c in columns if c.startswith("genome_") and c not in DISPLAY_COLUMNS]


def record_key(source_id: str, attack: str) -> str:
    key = f"{source_id}-{attack}".lower()
    if "." in key:
        raise ValueError(f"record keys must not contain dots: {key!r}")
    return key


def record_features(class_names: Sequence[str], genome_features: Mapping) -> Features:
    num_classes = len(class_names)
    return Features(
        {
            "key": Value("string"),
            "source_id": Value("string"),
            "image": Image(),
            "label": ClassLabel(names=list(class_names)),
            "pred": ClassLabel(names=list(class_names)),
            "is_adversarial": Value("bool"),
            "attack": Value("string"),
            "attack_params": Value("string"),
            "success": Value("bool"),
            "linf": Value("float32"),
            "l2": Value("float32"),
            "mixed_label": List(Value("uint8"), length=num_classes + 1),
            **genome_features,
        }
    )


def features_to_json(features: Features) -> dict:
    """Features as JSON that survives sorted keys: the column order is kept separately."""
    return {"columns": list(features), "types": features.to_dict()}


def features_from_json(data: dict) -> Features:
    types = Features.from_dict(data["types"])
    return Features({name: types[name] for name in data["columns"]})


def mixed_labels(labels: np.ndarray, preds: np.ndarray, is_adversarial: bool, num_classes: int):
    """Multi-hot [B, K+1]: original class, predicted class, last flag = is_adversarial."""
    out = np.zeros((len(labels), num_classes + 1), dtype=np.uint8)
    rows = np.arange(len(labels))
    out[rows, labels] = 1
    out[rows, preds] = 1
    out[:, num_classes] = int(is_adversarial)
    return out


@dataclass
class RecordBatch:
    """One variant (clean or one attack) of a batch of source images, column-wise."""

    source_ids: Sequence[str]
    attack: str
    attack_params: str
    images: np.ndarray  # uint8 [B, H, W, C]
    labels: np.ndarray
    preds: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    genome: Mapping[str, np.ndarray]

    @property
    def is_adversarial(self) -> bool:
        return self.attack != CLEAN

    @property
    def keys(self) -> list[str]:
        return [record_key(s, self.attack) for s in self.source_ids]

    def success(self) -> list[bool | None]:
        if not self.is_adversarial:
            return [None] * len(self.labels)
        return (self.preds != self.labels).tolist()

    @cached_property
    def pngs(self) -> list[bytes]:
        """The stored images as PNG bytes (encoded once for every format)."""
        return [encode_png(image) for image in self.images]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
