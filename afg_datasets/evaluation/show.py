"""`afg show`: one record's clean and adversarial image, perturbation and genomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.documents import read_bytes
from afg_datasets.errors import AFGError, ConfigError, CorpusError
from afg_datasets.files import save_figure
from afg_datasets.genome import ENCODERS
from afg_datasets.images import decode_png
from afg_datasets.layout import ATLAS_FILE, MODEL_DIR
from afg_datasets.records import CLEAN, record_key


class RecordNotFound(AFGError):
    """No record with the requested key."""


MAX_MAPS = 8  # maps drawn per layer: those the attack changed most


def _genomes(fig, axes, rows: list[dict[str, Any]], corpus: Corpus) -> None:
    """Both genomes as the corpus's encoder says: its picture column as it is, else its
    spatial maps on one shared scale, labelled by layer (rows) and map (columns)."""
    titles = ("clean genome", "adversarial genome")
    picture = ENCODERS[corpus.encoder].picture
    if picture and all(r.get(picture) for r in rows):
        for ax, row, title in zip(axes, rows, titles, strict=True):
            ax.imshow(decode_png(row[picture]["bytes"]))
            ax.set_title(f"{title} (rows: layers, columns: groups)", fontsize=9)
            ax.axis("off")
        return
    layers, tiles, size, width = genome_tiles(rows, corpus)
    for ax, tile, title in zip(axes, tiles, titles, strict=True):
        shown = ax.imshow(tile, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_yticks([size * (i + 0.5) for i in range(len(layers))], layers, fontsize=7)
        ax.set_xticks([size * (g + 0.5) for g in range(width)], [f"m{g + 1}" for g in range(width)])
        ax.tick_params(length=0, labelsize=7)
        for edge in range(1, len(layers)):
            ax.axhline(edge * size - 0.5, color="white", linewidth=0.8)
        for edge in range(1, width):
            ax.axvline(edge * size - 0.5, color="white", linewidth=0.8)
    fig.colorbar(shown, ax=axes[-1], fraction=0.046, label="fraction of the layer's peak")


def genome_maps(row: dict[str, Any], corpus: Corpus) -> dict[str, np.ndarray]:
    """Layer -> its spatial maps [K, S, S], as the corpus's encoder splits its columns
    (`layer_arrays`: maps first); a ConfigError when its genome has no maps to draw."""
    columns = {c: np.asarray(row[c], dtype=np.float32)[None] for c in corpus.genome_columns}
    arrays = ENCODERS[corpus.encoder].layer_arrays(columns, corpus.layers)
    maps = {layer: found[0][0] for layer, found in arrays.items() if found and found[0].ndim == 4}
    if not maps:
        raise ConfigError(f"the {corpus.encoder} genome of this corpus holds no maps to draw")
    return maps


def genome_tiles(
    rows: list[dict[str, Any]], corpus: Corpus
) -> tuple[list[str], list[np.ndarray], int, int]:
    """(layers, each record's genome as one [L*S, K*S] mosaic, S, K): per layer the K <=
    MAX_MAPS maps the two records differ in most, each layer divided by its peak over both
    records so they share one scale."""
    maps = [genome_maps(row, corpus) for row in rows]
    layers = list(maps[0])
    size = max(m.shape[-1] for m in maps[0].values())
    width = min(MAX_MAPS, max(len(m) for m in maps[0].values()))
    tiles = [np.zeros((len(layers) * size, width * size), np.float32) for _ in rows]
    for i, layer in enumerate(layers):
        stack = np.stack([m[layer] for m in maps])  # [records, K, S, S]
        change = np.abs(stack[-1] - stack[0]).mean(axis=(1, 2))
        chosen = np.sort(np.argsort(-change, kind="stable")[:width])
        peak = max(float(stack.max()), 1e-8)
        for tile, record in zip(tiles, stack[:, chosen] / peak, strict=True):
            s = record.shape[-1]
            for g, grid in enumerate(record):
                tile[i * size : i * size + s, g * size : g * size + s] = grid
    return layers, tiles, size, width


def _atlas(corpus: Corpus) -> np.ndarray | None:
    """The corpus's atlas (its basis rendered once, `model/genome_atlas.png`), if it lists one."""
    listed = {e["path"] for e in corpus.files()}
    name = f"{MODEL_DIR}/{ATLAS_FILE}"
    return decode_png(read_bytes(corpus.root / name, CorpusError)) if name in listed else None


def _atlas_changes(ax, atlas: np.ndarray, rows: list[dict[str, Any]], corpus: Corpus) -> None:
    """The atlas, each direction's picture labelled with how much the attack changed its mean
    code (adversarial - clean, as a fraction of the layer's largest clean mean code): which
    visual parts the attack turned on (red) or off (blue), by layer."""
    clean, adversarial = (genome_maps(row, corpus) for row in rows)
    gray = atlas.shape[-1] == 1
    ax.imshow(atlas[..., 0] if gray else atlas, cmap="gray" if gray else None)
    tile = (atlas.shape[0] + 1) // len(clean)
    for i, layer in enumerate(clean):
        before, after = clean[layer].mean(axis=(1, 2)), adversarial[layer].mean(axis=(1, 2))
        change = (after - before) / max(float(before.max()), 1e-8)
        for g, value in enumerate(change):
            colour = "red" if value > 0 else "blue"
            ax.text(g * tile + 1, i * tile + tile - 3, f"{value:+.2f}", color=colour, fontsize=7)
    ax.set_title("atlas: change of each direction's code", fontsize=9)
    ax.set_yticks([tile * (i + 0.5) for i in range(len(clean))], list(clean), fontsize=7)
    ax.set_xticks([])


def find_record(corpus: Corpus, key: str) -> dict[str, Any]:
    """One record by key, from the table shards of a verified corpus."""
    row = corpus.verify().find(key)
    if row is None:
        raise RecordNotFound(f"{corpus.root}: no record with key {key!r}")
    return row


SHOW_FORMATS = (".png", ".pdf", ".svg")


def show(corpus: Corpus, key: str, out: str | Path | None = None) -> Path:
    """Clean image, adversarial image, the signed perturbation (diverging colours, colourbar)
    and both genomes on one scale, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(out) if out else Path(f"show-{key}.png")  # not into the corpus: it is published
    if path.suffix.lower() not in SHOW_FORMATS:
        formats = ", ".join(SHOW_FORMATS)
        raise ConfigError(f"--out {str(path)!r}: the figure is written as {formats}")
    corpus.verify()
    adversarial = find_record(corpus, key)
    clean = find_record(corpus, record_key(adversarial["source_id"], CLEAN))
    x_clean = corpus.image(clean).astype(np.float32) / 255
    x_adv = corpus.image(adversarial).astype(np.float32) / 255
    delta = (x_adv - x_clean).mean(-1)  # signed, averaged over channels
    atlas = _atlas(corpus)
    panels = 5 + (atlas is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.8))
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
    _genomes(fig, axes[3:5], [clean, adversarial], corpus)
    if atlas is not None:
        _atlas_changes(axes[5], atlas, [clean, adversarial], corpus)
    fig.suptitle(key, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
