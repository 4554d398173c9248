"""`afg show`: one record's clean and adversarial image, perturbation and genomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from afg_datasets.corpus.columns import find_row
from afg_datasets.corpus.verify import require_intact
from afg_datasets.errors import AFGError, ConfigError
from afg_datasets.formats import TABLE_FORMAT
from afg_datasets.records import CLEAN, decode_png, record_key


class RecordNotFound(AFGError):
    """No record with the requested key."""


def _genomes(fig, axes, rows: list[dict[str, Any]], manifest: dict) -> None:
    """Both genomes: stored groupviz mosaics as they are; spatial maps on one shared scale,
    labelled by layer (rows) and group (columns)."""
    titles = ("clean genome", "adversarial genome")
    if all(r.get("genome_mosaic") for r in rows):
        for ax, row, title in zip(axes, rows, titles, strict=True):
            ax.imshow(decode_png(row["genome_mosaic"]["bytes"]))
            ax.set_title(f"{title} (rows: layers, columns: groups)", fontsize=9)
            ax.axis("off")
        return
    layers = [layer["name"] for layer in manifest["layers"]]
    tiles = genome_tiles(rows)
    size = tiles[0].shape[0] // len(layers)
    groups = tiles[0].shape[1] // size
    for ax, tile, title in zip(axes, tiles, titles, strict=True):
        shown = ax.imshow(tile, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_yticks([size * (i + 0.5) for i in range(len(layers))], layers, fontsize=7)
        ax.set_xticks(
            [size * (g + 0.5) for g in range(groups)], [f"g{g + 1}" for g in range(groups)]
        )
        ax.tick_params(length=0, labelsize=7)
        for edge in range(1, len(layers)):
            ax.axhline(edge * size - 0.5, color="white", linewidth=0.8)
        for edge in range(1, groups):
            ax.axvline(edge * size - 0.5, color="white", linewidth=0.8)
    fig.colorbar(shown, ax=axes[-1], fraction=0.046, label="fraction of the layer's peak")


def find_record(root: Path, key: str) -> dict[str, Any]:
    """One record by key, from the table shards (genome arrays as numpy)."""
    manifest = require_intact(root)
    shards = [root / e["path"] for e in manifest["files"] if TABLE_FORMAT.owns(e["path"])]
    row = find_row(shards, key)
    if row is None:
        raise RecordNotFound(f"{root}: no record with key {key!r}")
    return row


def genome_tiles(rows: list[dict[str, Any]]) -> list[np.ndarray]:
    """Each record's spatial genome as one [L*S, G*S] mosaic (rows: layers, columns: groups),
    every layer divided by its peak over all the records, so they share one scale."""
    maps = [np.asarray(r["genome_spatial"], dtype=np.float32) for r in rows]  # [L, G, S, S]
    peak = np.max([m.reshape(len(m), -1).max(1) for m in maps], axis=0).clip(1e-8)
    out = []
    for m in maps:
        scaled = m / peak[:, None, None, None]
        layers, groups, size, _ = scaled.shape
        out.append(scaled.transpose(0, 2, 1, 3).reshape(layers * size, groups * size))
    return out


SHOW_FORMATS = (".png", ".pdf", ".svg")


def show(root: str | Path, key: str, out: str | Path | None = None) -> Path:
    """Clean image, adversarial image, the signed perturbation (diverging colours, colourbar)
    and both genomes on one scale, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    path = Path(out) if out else Path(f"show-{key}.png")  # not into the corpus: it is published
    if path.suffix.lower() not in SHOW_FORMATS:
        formats = ", ".join(SHOW_FORMATS)
        raise ConfigError(f"--out {str(path)!r}: the figure is written as {formats}")
    manifest = require_intact(root)
    adversarial = find_record(root, key)
    clean = find_record(root, record_key(adversarial["source_id"], CLEAN))
    x_clean = decode_png(clean["image"]["bytes"]).astype(np.float32) / 255
    x_adv = decode_png(adversarial["image"]["bytes"]).astype(np.float32) / 255
    delta = (x_adv - x_clean).mean(-1)  # signed, averaged over channels
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.8))
    for ax, image, title in (
        (axes[0], x_clean, f"clean (label {clean['label']}, pred {clean['pred']})"),
        (axes[1], x_adv, f"{adversarial['attack']} (pred {adversarial['pred']})"),
    ):
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    limit = max(float(np.abs(delta).max()), 1 / 255)
    shown = axes[2].imshow(delta, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2].set_title("perturbation (adv - clean)", fontsize=9)
    axes[2].axis("off")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, label="pixel change, [0,1] units")
    _genomes(fig, axes[3:], [clean, adversarial], manifest)
    fig.suptitle(key, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
