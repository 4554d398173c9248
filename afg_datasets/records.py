"""The corpus's public record schema (datasets.Features), keys, mixed labels, Arrow batches."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, Features, Image, List, Value
from PIL import Image as PILImage

CLEAN = "clean"

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


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] -> PNG bytes (grayscale for one channel)."""
    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [H, W, C]."""
    array = np.asarray(PILImage.open(io.BytesIO(data)))
    return array[..., None] if array.ndim == 2 else array


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

    def png(self) -> list[bytes]:
        return [encode_png(image) for image in self.images]

    def to_arrow(self, features: Features, pngs: list[bytes]) -> pa.Table:
        schema = features.arrow_schema
        n = len(self.labels)
        num_classes = features["label"].num_classes
        columns = {
            "key": pa.array(self.keys, pa.string()),
            "source_id": pa.array(list(self.source_ids), pa.string()),
            "image": pa.array(
                [{"bytes": b, "path": None} for b in pngs], schema.field("image").type
            ),
            "label": pa.array(self.labels, pa.int64()),
            "pred": pa.array(self.preds, pa.int64()),
            "is_adversarial": pa.array([self.is_adversarial] * n, pa.bool_()),
            "attack": pa.array([self.attack] * n, pa.string()),
            "attack_params": pa.array([self.attack_params] * n, pa.string()),
            "success": pa.array(self.success(), pa.bool_()),
            "linf": pa.array(self.linf.astype(np.float32)),
            "l2": pa.array(self.l2.astype(np.float32)),
            "mixed_label": pa.FixedSizeListArray.from_arrays(
                pa.array(
                    mixed_labels(self.labels, self.preds, self.is_adversarial, num_classes).ravel()
                ),
                num_classes + 1,
            ),
        }
        for name, array in self.genome.items():
            if isinstance(features[name], Image):
                pictures = [{"bytes": encode_png(a), "path": None} for a in array]
                columns[name] = pa.array(pictures, schema.field(name).type)
            else:
                columns[name] = ndarray_to_arrow(array, schema.field(name).type)
        return pa.Table.from_pydict(columns, schema=schema)

    def wds_samples(self, features: Features, pngs: list[bytes]) -> list[dict[str, bytes | str]]:
        """Webdataset samples: .png, one .npy per genome array, .json with the scalar fields."""
        mixed = mixed_labels(
            self.labels, self.preds, self.is_adversarial, features["label"].num_classes
        )
        success = self.success()
        samples = []
        for i, key in enumerate(self.keys):
            meta = {
                "key": key,
                "source_id": self.source_ids[i],
                "label": int(self.labels[i]),
                "pred": int(self.preds[i]),
                "is_adversarial": self.is_adversarial,
                "attack": self.attack,
                "attack_params": self.attack_params,
                "success": success[i],
                "linf": float(np.float32(self.linf[i])),
                "l2": float(np.float32(self.l2[i])),
                "mixed_label": mixed[i].tolist(),
            }
            sample = {
                "__key__": key,
                "png": pngs[i],
                "json": json.dumps(meta, sort_keys=True).encode(),
            }
            for name, array in self.genome.items():
                if isinstance(features[name], Image):
                    sample[f"{name}.png"] = encode_png(array[i])
                else:
                    sample[f"{name}.npy"] = npy_bytes(array[i])
            samples.append(sample)
        return samples


def ndarray_to_arrow(array: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """[N, *shape] -> the nested-list storage of a datasets ArrayND extension type."""
    flat: pa.Array = pa.array(np.ascontiguousarray(array).reshape(-1))
    for dim in reversed(array.shape[1:]):
        count = len(flat) // dim
        flat = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32) * dim), flat)
    return pa.ExtensionArray.from_storage(arrow_type, flat)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
