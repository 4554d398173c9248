"""`afg show`: one record's clean and adversarial image, perturbation and genomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from afg_datasets.errors import AFGError
from afg_datasets.genome.groupviz import mosaic
from afg_datasets.records import CLEAN, decode_png, record_key
from afg_datasets.verify import require_intact


class RecordNotFound(AFGError):
    """No record with the requested key."""


def find_record(root: Path, key: str) -> dict[str, Any]:
    """One record by key, from the parquet shards (genome arrays as numpy)."""
    manifest = require_intact(root)
    for entry in manifest["files"]:
        if not entry["path"].endswith(".parquet"):
            continue
        table = pq.read_table(root / entry["path"], filters=[("key", "==", key)], use_threads=False)
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]
    raise RecordNotFound(f"{root}: no record with key {key!r}")


def genome_picture(row: dict[str, Any]) -> np.ndarray:
    """The record's genome as an image: its stored mosaic, else a mosaic of the spatial maps."""
    if row.get("genome_mosaic"):
        return decode_png(row["genome_mosaic"]["bytes"])
    maps = np.asarray(row["genome_spatial"], dtype=np.float32)  # [L, G, S, S]
    peak = maps.reshape(len(maps), -1).max(1).clip(1e-8)[:, None, None, None]
    tiles = (maps / peak * 255).round().astype(np.uint8)[None, :, :, None]
    return mosaic(tiles)[0]


def show(root: str | Path, key: str, out: str | Path | None = None, amplify: float = 5.0) -> Path:
    """Clean image, adversarial image, amplified perturbation, and both genomes, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    adversarial = find_record(root, key)
    clean = find_record(root, record_key(adversarial["source_id"], CLEAN))
    x_clean = decode_png(clean["image"]["bytes"]).astype(np.float32) / 255
    x_adv = decode_png(adversarial["image"]["bytes"]).astype(np.float32) / 255
    delta = np.clip(0.5 + amplify * (x_adv - x_clean), 0, 1)
    panels = [
        (x_clean, f"clean (label {clean['label']}, pred {clean['pred']})"),
        (x_adv, f"{adversarial['attack']} (pred {adversarial['pred']})"),
        (delta, f"perturbation x{amplify:g}"),
        (genome_picture(clean), "clean genome"),
        (genome_picture(adversarial), "adversarial genome"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.4))
    for ax, (image, title) in zip(axes, panels, strict=True):
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{key}  (genome rows: layers, columns: groups)", fontsize=10)
    fig.tight_layout()
    path = Path(out) if out else Path(f"show-{key}.png")  # not into the corpus: it is published
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
