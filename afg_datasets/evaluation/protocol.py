"""The bench's protocol, checked before anything is trained: which settings it runs, and
that every split a detector is fitted, calibrated or tested on can carry that job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from afg_datasets.attacks import ATTACKS
from afg_datasets.errors import CorpusError
from afg_datasets.layout import SPLITS

UNSEEN = ("all", "attack", "family", "none")
MIN_BENCH_SOURCES = 2  # per split: a detector is fitted, calibrated and tested on its own


def check_benchable(root: Path, manifest: dict) -> None:
    """From the manifest alone, before any record is read: attacks to detect, and every split
    with at least MIN_BENCH_SOURCES source images; a CorpusError naming what is missing."""
    if not manifest["attacks"]:
        raise CorpusError(f"{root}: a corpus without attacks has nothing to detect")
    for split in SPLITS:
        sources = manifest["splits"].get(split, {}).get("sources", 0)
        if sources < MIN_BENCH_SOURCES:
            raise CorpusError(
                f"{root}: its {split} split holds {sources} source image(s); the bench fits on "
                f"train, calibrates on validation and tests on test, each with at least "
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
