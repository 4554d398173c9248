"""The bench's protocol: what it keeps and compares (`PROTOCOL`, `protocol_facts`), the corpus
as it reads it once (`BenchCorpus`), which settings it runs, and, before anything is trained,
that every split a detector is fitted, calibrated or tested on can carry that job."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch

from afg_datasets import __version__
from afg_datasets.attacks import ATTACKS
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import CorpusError
from afg_datasets.evaluation.activations import layer_activations
from afg_datasets.evaluation.intervals import DRAWS, LEVEL
from afg_datasets.evaluation.methods import (
    BenchInputs,
    afg_parameters,
    raw_pixel_width,
)
from afg_datasets.layout import SPLITS
from afg_datasets.recognizer.data import protocol_filter, read_split, select
from afg_datasets.recognizer.model import RecognizerNet, parameter_count
from afg_datasets.records import CLEAN

UNSEEN = ("all", "attack", "family", "none")
MIN_BENCH_SOURCES = 2  # per split: a detector is fitted, calibrated and tested on its own


def check_benchable(corpus: Corpus) -> None:
    """From the manifest alone, before any record is read: attacks to detect, and every split
    with at least MIN_BENCH_SOURCES source images; a CorpusError naming what is missing."""
    if not corpus.attacks:
        raise CorpusError(f"{corpus.root}: a corpus without attacks has nothing to detect")
    for split in SPLITS:
        sources = corpus.facts.count(split, "sources")
        if sources < MIN_BENCH_SOURCES:
            raise CorpusError(
                f"{corpus.root}: its {split} split holds {sources} source image(s); the bench "
                "fits on train, calibrates on validation and tests on test, each with at least "
                f"{MIN_BENCH_SOURCES}: build with a larger --limit"
            )


def settings(attacks: Sequence[str], unseen: str) -> list[tuple[str, list[str]]]:
    """(setting, held-out attacks): seen; leave-one-attack-out; leave-one-family-out for every
    family of two or more attacks that leaves another family to train on."""
    if unseen not in UNSEEN:
        raise ValueError(f"unseen must be one of {', '.join(UNSEEN)}, got {unseen!r}")
    out: list[tuple[str, list[str]]] = [("seen", [])]
    if unseen in ("all", "attack"):
        out += [("unseen", [a]) for a in attacks]
    if unseen in ("all", "family"):
        families: dict[str, list[str]] = {}
        for a in attacks:
            families.setdefault(ATTACKS[a].family, []).append(a)
        out += [("family", f) for f in families.values() if 1 < len(f) < len(attacks)]
    return out


def check_classes(
    root: Path, splits: Mapping[str, Mapping[str, np.ndarray]], setting: str, held_out: list[str]
) -> None:
    """Every split of a setting holds clean and adversarial records after the protocol
    (correct sources, successful attacks, held-out attacks out of train and validation): a
    detector cannot be fitted, calibrated or scored on one class. A CorpusError naming the
    split and setting otherwise."""
    for split in SPLITS:
        flags = np.asarray(splits[split]["is_adversarial"], dtype=bool)
        missing = [
            name for name, flag in (("clean", False), ("adversarial", True)) if flag not in flags
        ]
        if missing:
            where = f"{setting}" + (f" (without {', '.join(held_out)})" if held_out else "")
            raise CorpusError(
                f"{root}: in setting {where}, its {split} split holds no {missing[0]} records "
                "once only correctly classified sources and successful attacks are kept; a "
                "detector needs both: build with a larger --limit, or bench with --unseen none"
            )


PROTOCOL = {
    "sources": "only source images the target model classifies correctly",
    "adversarial_records": "only where the attack succeeded (stored image misclassified)",
    "splits": "by source image, as built (train / validation for early stopping, detector "
    "fitting and thresholds / test)",
    "threat_model": "non-adaptive: the attacks target the classifier only and never saw any "
    "detector or recognizer (see `adaptive` for the white-box attacker)",
    "settings": "seen: trained on all attacks; unseen: trained and validated without attack X, "
    "tested on X; family: trained and validated without every attack of a norm family "
    "(linf, l2, ...), tested on each of them",
    "metrics": "AUROC; TPR at 5% FPR read off the test ROC (an oracle operating point); "
    "TPR and FPR at the threshold chosen on validation (5% of clean validation records "
    "flagged: the deployable operating point); balanced detection accuracy at 0.5; "
    "recovery = top-1 original class on successful adversarial records; end_to_end = class "
    "accuracy on the mixed clean + adversarial stream",
    "controls": "raw_pixels: the same recognizer on the stored images, its width chosen so "
    "its parameter count matches the AFG recognizer's, same training budget and early "
    "stopping; mahalanobis (Lee et al. 2018) and lid (Ma et al. 2018): Gaussians / reference "
    "set from clean train records, logistic regression fitted on validation",
}


@dataclass
class BenchCorpus:
    """A verified corpus as the bench reads it once: protocol-filtered splits, pooled layer
    features of the stored images, its target model."""

    corpus: Corpus
    target: Any
    data: dict[str, dict[str, np.ndarray]]
    pooled: dict[str, list[np.ndarray]]

    @classmethod
    def read(cls, corpus: Corpus) -> BenchCorpus:
        """The corpus, verified (once per `Corpus`), checked to be benchmarkable before its
        records are read and again after the protocol's filter."""
        corpus.verify()
        check_benchable(corpus)
        target = corpus.target_model()
        data = {s: protocol_filter(read_split(corpus, s)) for s in SPLITS}
        for split, records in data.items():
            adversarial = records["attack"] != CLEAN
            if adversarial.all() or not adversarial.any():
                kind = "adversarial" if not adversarial.any() else "clean"
                raise CorpusError(
                    f"{corpus.root}: its {split} split has no {kind} records the protocol keeps "
                    "(correctly classified sources, successful attacks); a detector needs "
                    "both: build with a larger --limit"
                )
        pooled = {
            s: layer_activations(target, data[s]["image"], corpus.layers, True) for s in SPLITS
        }
        return cls(corpus, target, data, pooled)

    @property
    def root(self) -> Path:
        return self.corpus.root

    def inputs(
        self, keep: dict[str, np.ndarray | None], quick: bool, show_epochs: bool = False
    ) -> BenchInputs:
        """What every method sees, `keep` (per split, a record mask or None) applied."""
        data, pooled = self.data, self.pooled
        splits = {s: data[s] if keep[s] is None else select(data[s], keep[s]) for s in SPLITS}
        pooled = {s: [f if keep[s] is None else f[keep[s]] for f in pooled[s]] for s in SPLITS}
        return BenchInputs(
            splits,
            pooled,
            self.corpus,
            self.target,
            quick,
            show_epochs=show_epochs,
        )


def protocol_facts(data, attacks, seeds, quick, corpus: Corpus, target) -> dict[str, Any]:
    inputs = BenchInputs(data, {}, corpus, target, quick)
    width = raw_pixel_width(inputs)
    shape = tuple(data["train"]["image"].shape[1:])
    raw = RecognizerNet({"image": shape}, inputs.num_classes, width=width)
    return {
        **PROTOCOL,
        "seeds": seeds,
        "quick": quick,
        "parameters": {"afg": afg_parameters(inputs), "raw_pixels": parameter_count(raw)},
        "raw_pixels_width": width,
        "uncertainty": f"mean over {seeds} training seed(s) with their sample std; "
        f"{LEVEL:.0%} percentile interval from {DRAWS} bootstrap resamples of both the "
        "test source images (a source brings its clean and all its adversarial records; "
        "the same resamples for every method, so differences are paired) and the training "
        "seeds (drawn with replacement)",
        "test_records": {a: int(attack_mask(data["test"], a).sum()) for a in ["overall", *attacks]},
    }


def versions() -> dict[str, str]:
    """The package versions a report's figures came from."""
    return {
        "afg_datasets": __version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
    }


def attack_mask(test, attack: str) -> np.ndarray:
    """The clean records and `attack`'s (`overall`: every record)."""
    if attack == "overall":
        return np.ones(len(test["attack"]), bool)
    return (test["attack"] == CLEAN) | (test["attack"] == attack)
