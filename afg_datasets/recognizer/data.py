"""A corpus split as column arrays (parquet via pyarrow), for training and benchmarks."""

from __future__ import annotations

import numpy as np
import torch

from afg_datasets.corpus.columns import numpy_column
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.images import decode_png
from afg_datasets.records import CLEAN, DISPLAY_COLUMNS


def read_split(corpus: Corpus, split: str, images: bool = True) -> dict[str, np.ndarray]:
    """Every record of `split` (all attack directories), in file order; PNGs decoded only
    when `images` is set. Callers verify the corpus once first (`Corpus.verify`)."""
    table = corpus.table(split)
    dropped = [*DISPLAY_COLUMNS, *([] if images else ["image"])]  # pictures: not model inputs
    table = table.drop_columns([name for name in dropped if name in table.column_names])
    shape = corpus.image_shape
    return {name: _array(name, table.column(name), shape) for name in table.column_names}


def _array(name: str, column, shape: tuple[int, int, int]) -> np.ndarray:
    """A column as the recognizer uses it: images decoded [N, C, H, W], `success` as bool
    (null for clean records), numbers as float64 / int64, strings as numpy strings."""
    if name == "image":
        values = column.to_pylist()
        return np.stack([decode_png(v["bytes"], shape) for v in values]).transpose(0, 3, 1, 2)
    if name == "success":
        return np.array([bool(v) for v in column.to_pylist()])
    array = numpy_column(column)
    if array is None or array.dtype == object:
        return np.asarray(column.to_pylist())
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    return array.astype(np.int64) if array.dtype.kind in "iu" else array


def to_tensors(arrays: dict[str, np.ndarray], inputs: list[str]) -> dict[str, torch.Tensor]:
    """Model inputs and targets as tensors (images scaled to [0,1])."""
    tensors = {}
    for name in inputs:
        array = arrays[name].astype(np.float32)
        tensors[name] = torch.from_numpy(array / 255.0 if name == "image" else array)
    tensors["label"] = torch.from_numpy(arrays["label"].astype(np.int64))
    tensors["pred"] = torch.from_numpy(arrays["pred"].astype(np.int64))
    tensors["is_adversarial"] = torch.from_numpy(arrays["is_adversarial"].astype(np.float32))
    tensors["mixed_label"] = torch.from_numpy(arrays["mixed_label"].astype(np.float32))
    return tensors


def select(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in arrays.items()}


def protocol_filter(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Only sources the target model classifies correctly when clean; adversarial records
    only where the attack succeeded."""
    clean = arrays["attack"] == CLEAN
    correct = set(arrays["source_id"][clean & (arrays["pred"] == arrays["label"])])
    keep = np.array([s in correct for s in arrays["source_id"]])
    keep &= clean | arrays["success"]
    return select(arrays, keep)
