"""`afg afs`: adversarial feature separability per layer.

AFS (Chen et al.): the distance between an adversarial image's features and its clean
original's grows with layer depth. Measured here per attack and layer, for the target model's
raw activations (recomputed from the stored PNGs with the corpus's own model) and for the
stored genome, each normalized by the median distance between two different clean images of
the same class at that layer, so layers and representations are comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import AFGError
from afg_datasets.evaluation.activations import layer_activations
from afg_datasets.files import save_figure
from afg_datasets.genome import ENCODERS
from afg_datasets.layout import AFS_JSON, AFS_PNG, read_json, write_json
from afg_datasets.recognizer.data import protocol_filter, read_split
from afg_datasets.records import CLEAN


class AnalysisError(AFGError):
    """The corpus lacks what an analysis needs."""


def genome_by_layer(data: dict[str, np.ndarray], corpus: Corpus) -> list[np.ndarray]:
    """Per layer, its genome arrays (as the corpus's encoder splits its columns: `layer_arrays`)
    flattened and concatenated [N, F]."""
    columns = {name: data[name] for name in corpus.genome_columns}
    arrays = ENCODERS[corpus.encoder].layer_arrays(columns, corpus.layers)
    return [
        np.concatenate([a.reshape(len(a), -1).astype(np.float32) for a in arrays[layer]], 1)
        for layer in corpus.layers
    ]


def same_class_scale(features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Median distance between each clean image and another clean image of its class."""
    rng = np.random.default_rng(seed)
    distances = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < 2:
            continue
        partners = rng.permutation(members)
        partners = np.where(partners == members, np.roll(partners, 1), partners)
        distances.append(np.linalg.norm(features[members] - features[partners], axis=1))
    if not distances:
        raise AnalysisError("no class has two clean records in this split; use a larger split")
    return float(np.median(np.concatenate(distances)))


def separability(
    representation: list[np.ndarray], data: dict[str, np.ndarray], attacks: list[str], seed: int
) -> dict[str, list[dict[str, float]]]:
    """Per attack, per layer: quantiles of ||adv - its clean|| / same-class clean scale."""
    clean_rows = np.flatnonzero(data["attack"] == CLEAN)
    row_of_source = {data["source_id"][r]: r for r in clean_rows}
    scales = [
        same_class_scale(f[clean_rows], data["label"][clean_rows], seed) for f in representation
    ]
    result = {}
    for attack in attacks:
        rows = np.flatnonzero(data["attack"] == attack)
        originals = np.array([row_of_source[s] for s in data["source_id"][rows]])
        curve = []
        for features, scale in zip(representation, scales, strict=True):
            d = np.linalg.norm(features[rows] - features[originals], axis=1) / scale
            q25, median, q75 = np.percentile(d, [25, 50, 75])
            curve.append({"median": round(median, 4), "q25": round(q25, 4), "q75": round(q75, 4)})
        result[attack] = curve
    return result


def afs(corpus: Corpus, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Compute AFS curves for every attack, write afs.json and afs.png (the CLI then
    refreshes the card, which shows them)."""
    corpus.verify()
    root, layers, attacks = corpus.root, corpus.layers, corpus.attacks
    data = protocol_filter(read_split(corpus, split, images=True))  # successful attacks only
    if not len(data.get("key", [])):
        raise AnalysisError(f"{root}: split {split!r} has no records")
    model = corpus.target_model()
    curves = {
        "raw": separability(layer_activations(model, data["image"], layers), data, attacks, seed),
        "genome": separability(genome_by_layer(data, corpus), data, attacks, seed),
    }
    report = {
        "split": split,
        "records": int(len(data["key"])),
        "layers": layers,
        "normalization": "median distance between two different clean images of the same class",
        "curves": curves,
        "depth_correlation": _depth_correlation(curves),
    }
    report["summary"] = _summary(report)
    write_json(root / AFS_JSON, {"summary": report.pop("summary"), **report})
    plot_afs(report, curves, root / AFS_PNG)
    return read_json(root / AFS_JSON)


def _depth_correlation(curves: dict) -> dict[str, dict[str, float]]:
    """Spearman rank correlation of the median distance with layer depth, per attack."""
    return {
        kind: {
            attack: round(float(spearmanr(range(len(c)), [p["median"] for p in c])[0]), 3)
            if len(c) > 1
            else float("nan")
            for attack, c in by_attack.items()
        }
        for kind, by_attack in curves.items()
    }


def _summary(report: dict) -> str:
    sentences = []
    for kind, label in (("raw", "raw activations"), ("genome", "the genome")):
        curves = report["curves"][kind]
        spans = ", ".join(
            f"{a} {c[0]['median']:.2f} -> {c[-1]['median']:.2f}" for a, c in curves.items()
        )
        # Said from the same figures the sentence prints: last layer against first, and
        # whether the rise is steady (Spearman rank correlation with depth above 0.5).
        higher = [a for a, c in curves.items() if c[-1]["median"] > c[0]["median"]]
        steady = [a for a in higher if report["depth_correlation"][kind][a] > 0.5]
        verdict = (
            f"is larger at the last layer than at the first for {len(higher)} of "
            f"{len(curves)} attacks ({len(steady)} of them rising steadily with depth)"
        )
        sentences.append(
            f"For {label}, the normalized clean-vs-adversarial distance {verdict} "
            f"(median, first -> last layer: {spans})."
        )
    return " ".join(sentences) + f" Split: {report['split']}, {report['records']} records."


def plot_afs(report: dict, curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0), sharey=True)  # one y range: comparable
    depth = np.arange(len(report["layers"]))
    for ax, (kind, title) in zip(
        axes, (("raw", "raw activations"), ("genome", "genome")), strict=True
    ):
        for attack, curve in curves[kind].items():
            median = [p["median"] for p in curve]
            ax.plot(depth, median, marker="o", label=attack)
            ax.fill_between(depth, [p["q25"] for p in curve], [p["q75"] for p in curve], alpha=0.2)
        ax.set_xticks(depth, report["layers"])
        ax.set_title(title)
        ax.set_xlabel("layer (depth)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("adv vs clean distance\n(/ same-class clean distance)")
    for ax in axes:
        ax.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
    axes[1].legend(fontsize=8)
    fig.text(
        0.5,
        0.01,
        "line: median over records; band: interquartile range (25th-75th percentile); "
        "dotted: 1 = as far apart as two clean images of one class",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, path)
    plt.close(fig)
