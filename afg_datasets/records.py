"""The corpus's public record schema (datasets.Features), keys, mixed labels, and one batch of
records as the build hands it to every output format."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from datasets import ClassLabel, Features, Image, List, Value

from afg_datasets.images import encode_png

CLEAN = "clean"
# Columns that are pictures of a genome, not model inputs.
DISPLAY_COLUMNS = ("genome_mosaic",)


@dataclass(frozen=True)
class Column:
    """One metadata column of every record: its name, its datasets feature (given the class
    names), what it means, how a batch gives its values, and the type a training loop reads it
    as (`load`, `dataloader` and `stream` yield those columns; None: not read there). Genome
    columns are the encoder's own."""

    name: str
    feature: Callable[[Sequence[str]], Any]
    doc: str
    values: Callable[[RecordBatch, int], Sequence | np.ndarray]
    reads_as: str | None = None  # a numpy dtype, or "str"


def _same(value: Any) -> Callable[[Sequence[str]], Any]:
    return lambda _class_names: value


def _labels(class_names: Sequence[str]) -> ClassLabel:
    return ClassLabel(names=list(class_names))


# The record schema, in the column order of every parquet file; every format, reader and the
# card derive from it (genome columns follow, each encoder's own).
RECORD_COLUMNS = (
    Column(
        "key",
        _same(Value("string")),
        "Unique record key `<source_id>-<attack>` (lowercase, no dots).",
        lambda b, _k: b.keys,
        reads_as="str",
    ),
    Column(
        "source_id",
        _same(Value("string")),
        "Stable id of the source image; all records of one source share a split.",
        lambda b, _k: list(b.source_ids),
    ),
    Column(
        "image",
        _same(Image()),
        "The stored image (PNG, uint8): the clean source or its quantized adversarial version.",
        lambda b, _k: b.pngs,
    ),
    Column(
        "label",
        _labels,
        "Original (true) class of the source image.",
        lambda b, _k: b.labels,
        reads_as="int64",
    ),
    Column(
        "pred",
        _labels,
        "Target model's prediction on `image` as stored (after uint8 quantization).",
        lambda b, _k: b.preds,
    ),
    Column(
        "is_adversarial",
        _same(Value("bool")),
        "True for attacked images, False for clean originals.",
        lambda b, _k: np.full(len(b.labels), b.is_adversarial),
        reads_as="bool",
    ),
    Column(
        "attack",
        _same(Value("string")),
        "Attack name, `clean` for originals.",
        lambda b, _k: [b.attack] * len(b.labels),
        reads_as="str",
    ),
    Column(
        "attack_params",
        _same(Value("string")),
        "Attack parameters as canonical JSON (`{}` for clean).",
        lambda b, _k: [b.attack_params] * len(b.labels),
    ),
    Column(
        "success",
        _same(Value("bool")),
        "Adversarial records: `pred != label`; null for clean records.",
        lambda b, _k: b.success(),
    ),
    Column(
        "linf",
        _same(Value("float32")),
        "L-infinity distance to the clean source in [0,1] pixel units (0 for clean).",
        lambda b, _k: b.linf.astype(np.float32),
    ),
    Column(
        "l2",
        _same(Value("float32")),
        "L2 distance to the clean source in [0,1] pixel units (0 for clean).",
        lambda b, _k: b.l2.astype(np.float32),
    ),
    Column(
        "mixed_label",
        lambda names: List(Value("uint8"), length=len(names) + 1),
        "Multi-hot, length num_classes + 1: original class, predicted class, and a last flag "
        "= is_adversarial.",
        lambda b, k: mixed_labels(b.labels, b.preds, b.is_adversarial, k),
        reads_as="float32",
    ),
)
FIELD_DOCS = {column.name: column.doc for column in RECORD_COLUMNS}  # the card's schema table
READ_COLUMNS = tuple(column.name for column in RECORD_COLUMNS if column.reads_as)
READ_TYPES = {column.name: column.reads_as for column in RECORD_COLUMNS if column.reads_as}
# The columns a record's `RecordBatch` is rebuilt from (`afg encode`): the others (key,
# is_adversarial, attack, success, mixed_label) derive from these and the variant's attack.
STORED_COLUMNS = ("source_id", "image", "label", "pred", "attack_params", "linf", "l2")


def genome_inputs(columns: Sequence[str]) -> list[str]:
    """The genome arrays among `columns` (what a recognizer reads)."""
    return [c for c in columns if c.startswith("genome_") and c not in DISPLAY_COLUMNS]


def record_key(source_id: str, attack: str) -> str:
    key = f"{source_id}-{attack}".lower()
    if "." in key:
        raise ValueError(f"record keys must not contain dots: {key!r}")
    return key


def record_features(class_names: Sequence[str], genome_features: Mapping) -> Features:
    """The corpus schema: `RECORD_COLUMNS`, then the encoder's genome columns."""
    columns = {c.name: c.feature(class_names) for c in RECORD_COLUMNS}
    return Features({**columns, **genome_features})


def record_values(batch: RecordBatch, num_classes: int) -> dict[str, Sequence | np.ndarray]:
    """Each `RECORD_COLUMNS` column of a batch (one value per record), in schema order."""
    return {c.name: c.values(batch, num_classes) for c in RECORD_COLUMNS}


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
