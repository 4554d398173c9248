"""A corpus split as column arrays (parquet via pyarrow), for training and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from afg_datasets.corpus.manifest import load_manifest, split_files
from afg_datasets.records import DISPLAY_COLUMNS, decode_png


def read_split(root: str | Path, split: str, images: bool = True) -> dict[str, np.ndarray]:
    """Every record of `split` (all attack directories), in file order; PNGs decoded only
    when `images` is set. Callers verify the corpus once first (`require_intact`)."""
    root = Path(root)
    manifest = load_manifest(root)
    paths = split_files(root, manifest, split)
    tables = [pq.read_table(p, use_threads=False) for p in paths]
    columns: dict[str, list] = {}
    for table in tables:
        for name in table.column_names:
            columns.setdefault(name, []).append(table.column(name))
    out: dict[str, np.ndarray] = {}
    if not images:
        columns.pop("image", None)
    for name in DISPLAY_COLUMNS:  # pictures of genomes, not model inputs
        columns.pop(name, None)
    for name, chunks in columns.items():
        values = [v for chunk in chunks for v in chunk.to_pylist()]
        if name == "image":
            out[name] = np.stack([decode_png(v["bytes"]) for v in values]).transpose(0, 3, 1, 2)
        elif name == "success":
            out[name] = np.array([bool(v) for v in values])
        else:
            out[name] = np.asarray(values)
    return out


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
    clean = arrays["attack"] == "clean"
    correct = set(arrays["source_id"][clean & (arrays["pred"] == arrays["label"])])
    keep = np.array([s in correct for s in arrays["source_id"]])
    keep &= clean | arrays["success"]
    return select(arrays, keep)
