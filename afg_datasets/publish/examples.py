"""The card's first figure (`examples.png`, format 1.5): per attack, one clean record, its
successful adversarial version and the perturbation between them, drawn from the stored images
as they are (no plotting library: the same corpus gives the same PNG bytes)."""

from __future__ import annotations

import numpy as np

from afg_datasets.corpus.columns import find_row
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.files import atomic_write
from afg_datasets.images import encode_png
from afg_datasets.layout import EXAMPLES_PNG
from afg_datasets.records import CLEAN, record_key

SPLIT_ORDER = ("test", "validation", "train")  # where a pair is looked for first
TILE = 96  # smallest tile side drawn: small images are enlarged by a whole factor (nearest)
GAP = 2  # white pixels between tiles


def example_keys(corpus: Corpus) -> dict[str, tuple[str, str]]:
    """Attack -> (clean key, adversarial key) of its first successful record (split order
    SPLIT_ORDER, then file order); an attack with no successful record is left out."""
    columns = ["key", "source_id", "attack", "success"]
    found: dict[str, tuple[str, str]] = {}
    for attack in corpus.attacks:
        for split in SPLIT_ORDER:
            if not corpus.paths(split=split, config=attack):
                continue  # a small corpus may have no shard of this split
            rows = corpus.table(split, columns, config=attack).to_pydict()
            hits = [i for i, a in enumerate(rows["attack"]) if a == attack and rows["success"][i]]
            if hits:
                adversarial = rows["key"][hits[0]]
                found[attack] = (record_key(rows["source_id"][hits[0]], CLEAN), adversarial)
                break
    return found


def examples_mosaic(corpus: Corpus) -> np.ndarray | None:
    """uint8 [H, W, C]: a row per attack (manifest order) of clean | adversarial |
    perturbation (the channel mean of adversarial - clean, mid-grey 128 = no change, each row
    scaled to its own largest change); None when no attack succeeded."""
    rows = []
    for attack, (clean_key, adversarial_key) in example_keys(corpus).items():
        paths = corpus.paths(config=attack)  # the clean and this attack's shards, not every one
        clean, adversarial = (
            corpus.image(find_row(paths, key)).astype(np.float32)
            for key in (clean_key, adversarial_key)
        )
        delta = (adversarial - clean).mean(-1, keepdims=True)
        limit = max(float(np.abs(delta).max()), 1.0)
        change = np.repeat(128 + 127 * delta / limit, clean.shape[-1], axis=-1)
        rows.append([clean, adversarial, change])
    if not rows:
        return None
    size, channels = rows[0][0].shape[0], rows[0][0].shape[-1]
    scale = -(-TILE // size)  # ceil
    side = size * scale
    out = np.full((len(rows) * (side + GAP) - GAP, 3 * (side + GAP) - GAP, channels), 255)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            big = np.kron(np.clip(np.rint(tile), 0, 255), np.ones((scale, scale, 1)))
            top, left = r * (side + GAP), c * (side + GAP)
            out[top : top + side, left : left + side] = big
    return out.astype(np.uint8)


def write_examples(corpus: Corpus) -> bool:
    """Write `examples.png` into the corpus when it has none; whether the corpus has one."""
    path = corpus.root / EXAMPLES_PNG
    if path.is_file():
        return True
    mosaic = examples_mosaic(corpus)
    if mosaic is None:
        return False
    png = encode_png(mosaic)
    atomic_write(path, lambda handle: handle.write(png))
    return True
