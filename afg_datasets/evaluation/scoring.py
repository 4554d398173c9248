"""The bench's scoring: a method's metrics on the test records, their seed mean, std and
bootstrap interval over test source images (paired: the same resamples for every method), and
one method minus another with the interval of the difference and its verdict, each metric
judged in its own direction (`intervals.LOWER_IS_BETTER`)."""

from __future__ import annotations

import statistics
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from afg_datasets.evaluation.intervals import (
    DRAWS,
    LOWER_IS_BETTER,
    METRICS,
    interval,
    seed_mean_draws,
    seeds_needed,
    source_weights,
    weighted_metrics,
)
from afg_datasets.evaluation.methods import METHODS, BenchInputs, Scores
from afg_datasets.evaluation.protocol import attack_mask


def metrics(test: dict[str, np.ndarray], scores: Scores, mask: np.ndarray) -> dict[str, Any]:
    """The plain metrics of `scores` on the masked test records (no resampling)."""
    values = _draws(test, scores, mask, np.ones((1, int(mask.sum()))))
    out: dict[str, Any] = {k: None if np.isnan(v[0]) else float(v[0]) for k, v in values.items()}
    out["n"] = int(mask.sum())
    return out


def _draws(test, scores: Scores, mask: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    p_adv = None if scores.p_adv is None else scores.p_adv[mask]
    classes = None if scores.classes is None else scores.classes[mask]
    return weighted_metrics(
        test["is_adversarial"][mask], test["label"][mask], p_adv, classes, weights, scores.threshold
    )


def aggregate(
    runs: list[dict[str, Any]], draws: dict[str, np.ndarray], keys: Sequence[str] = METRICS
) -> dict[str, Any]:
    """Mean over training seeds, their sample std, and the bootstrap interval (over test
    source images and training seeds) of the seed-mean."""
    row: dict[str, Any] = {"n": runs[0]["n"], "seeds": len(runs), "std": {}, "ci": {}}
    for key in keys:
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = statistics.fmean(values) if values else None
        row["std"][key] = statistics.stdev(values) if len(values) > 1 else None
        row["ci"][key] = interval(draws[key]) if values else None
    return row


def compare(
    boots: dict[str, dict[str, np.ndarray]],
    rows: dict[str, dict],
    first: str = "afg",
    versus: str = "raw_pixels",
) -> list[dict]:
    """`first` minus `versus` per metric, with the paired bootstrap interval of the difference
    (the same resampled test source images for both)."""
    if first not in boots or versus not in boots:
        return []
    out = []
    for key in METRICS:
        a, b = rows[first][key], rows[versus][key]
        if a is None or b is None:
            continue
        ci = interval(boots[first][key] - boots[versus][key])
        above, below = (versus, first) if key in LOWER_IS_BETTER else (first, versus)
        verdict = "no difference shown"
        if ci and ci[0] > 0:
            verdict = f"{_spoken(above)} better"
        elif ci and ci[1] < 0:
            verdict = f"{_spoken(below)} better"
        spreads = [rows[first]["std"][key], rows[versus]["std"][key]]
        out.append(
            {"metric": key, "first": first, "versus": versus, first: a, versus: b}
            | {"difference": a - b, "ci": ci, "verdict": verdict}
            | {"seeds_needed": seeds_needed(a - b, spreads)}
        )
    return out


def _spoken(method: str) -> str:
    return method.replace("raw_pixels", "raw pixels")


def evaluate_method(
    method: str, setting: str, inputs: BenchInputs, seeds: int, attacks, curves
) -> tuple[dict[str, tuple], list[Scores]]:
    """(attack -> (result row, seed-mean bootstrap draws), each seed's Scores) of one method
    in one setting; the seen setting's ROC curves (seed 0) go into `curves`."""
    test = inputs.splits["test"]
    runs: dict[str, list[dict]] = {}
    draws: dict[str, list[dict]] = {}
    per_seed = []
    for seed in range(seeds):
        scores = METHODS[method](inputs, seed)
        per_seed.append(scores)
        for attack in attacks:
            mask = attack_mask(test, attack)
            runs.setdefault(attack, []).append(metrics(test, scores, mask))
            weights = paired_weights(test["source_id"][mask], f"{setting}/{attack}")
            draws.setdefault(attack, []).append(_draws(test, scores, mask, weights))
            if seed == 0 and setting != "family" and scores.p_adv is not None:
                curve = (test["is_adversarial"][mask], scores.p_adv[mask], scores.threshold)
                curves[(setting, method, attack)] = curve
    out = {}
    for attack, seed_runs in runs.items():
        mean_draws = seed_mean_draws(draws[attack], METRICS, f"{setting}/{attack}")
        row = {"method": method, "setting": setting, "attack": attack}
        out[attack] = ({**row, **aggregate(seed_runs, mean_draws)}, mean_draws)
    return out, per_seed


def paired_weights(source_ids: np.ndarray, name: str) -> np.ndarray:
    """The bootstrap weights of one test subset: the same for every method (paired)."""
    return source_weights(source_ids, DRAWS, zlib.crc32(name.encode()))
