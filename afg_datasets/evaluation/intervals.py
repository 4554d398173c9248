"""Metrics with their uncertainty: every metric is computed for a matrix of record weights, one
row per paired bootstrap resample of the test **source images** (a resampled source brings its
clean record and all its adversarial records), so intervals and method differences are
vectorized over resamples. With a single row of ones the metrics are the plain ones, equal to
scikit-learn's `roc_auc_score`, `roc_curve` (interpolated TPR at 5 % FPR) and
`balanced_accuracy_score`; scikit-learn has no weighted-resample form of these, hence this
module."""

from __future__ import annotations

import math
import zlib

import numpy as np

METRICS = (
    "detection_auroc",
    "tpr_at_5fpr",
    "tpr_at_val_threshold",
    "fpr_at_val_threshold",
    "detection_acc",
    "recovery_acc",
    "clean_acc",
    "end_to_end_acc",
)
# Metrics where less is better (every other metric: more is better): a comparison's verdict
# names the method with the lower value as the better one.
LOWER_IS_BETTER = frozenset({"fpr_at_val_threshold"})
DRAWS = 1000  # bootstrap resamples
LEVEL = 0.95


def source_weights(source_ids: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """[draws, records] weights: how often each record's source image was drawn when the
    test sources are resampled with replacement."""
    sources, inverse = np.unique(source_ids, return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(sources), np.full(len(sources), 1 / len(sources)), size=draws)
    return counts[:, inverse].astype(np.float64)


def over_seeds(per_seed: np.ndarray, seed: int) -> np.ndarray:
    """Seed-mean draws that resample the training seeds too ([seeds, draws] -> [draws]): draw b
    averages the b-th test-source resample of as many seeds drawn with replacement, so an
    interval covers training variance as well as test sources. One seed: its own draws."""
    seeds, draws = per_seed.shape
    picks = np.random.default_rng(seed).integers(seeds, size=(seeds, draws))
    return np.take_along_axis(per_seed, picks, axis=0).mean(0)


def seed_mean_draws(draws: list[dict], keys, name: str) -> dict[str, np.ndarray]:
    """Per metric, the seed-mean draws of one row from each seed's draws, the training seeds
    resampled too (`over_seeds`; the same seed draws for every method of `name`)."""
    salt = zlib.crc32(f"seeds/{name}".encode())
    return {k: over_seeds(np.stack([d[k] for d in draws]), salt) for k in keys}


def seeds_needed(difference: float, spreads: list[float | None]) -> int | None:
    """Training seeds per method at which the seed part of a difference's 95 % interval
    (about 2 standard errors of the seed-means) is narrower than the difference itself; None
    where a spread is unmeasured (one seed) or the difference is zero (to 1e-9)."""
    if math.isclose(difference, 0.0, abs_tol=1e-9) or any(s is None for s in spreads):
        return None  # a float difference of 1e-17 is no difference: no seed count shows it
    return max(2, math.ceil(round(4 * sum(s * s for s in spreads) / difference**2, 9)))


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _auroc_and_tpr(p: np.ndarray, positive: np.ndarray, w: np.ndarray):
    """Weighted AUROC (ties count half) and TPR at 5 % FPR on the weighted ROC curve."""
    order = np.argsort(p, kind="stable")
    p, positive, w = p[order], positive[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])  # groups of tied scores
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    auroc = ratio((pos * (below + 0.5 * neg)).sum(1), pos.sum(1) * neg.sum(1))
    # ROC from the highest threshold down, starting at (0, 0)
    tpr = np.cumsum(pos[:, ::-1], axis=1) / np.maximum(pos.sum(1, keepdims=True), 1e-300)
    fpr = np.cumsum(neg[:, ::-1], axis=1) / np.maximum(neg.sum(1, keepdims=True), 1e-300)
    zeros = np.zeros((len(w), 1))
    tpr, fpr = np.hstack([zeros, tpr]), np.hstack([zeros, fpr])
    at5 = np.array([np.interp(0.05, f, t) for f, t in zip(fpr, tpr, strict=True)])
    return auroc, np.where(np.isnan(auroc), np.nan, at5)


def weighted_metrics(
    is_adv: np.ndarray,
    labels: np.ndarray,
    p_adv: np.ndarray | None,
    classes: np.ndarray | None,
    w: np.ndarray,
    threshold: float | None = None,
) -> dict[str, np.ndarray]:
    """Each metric for every row of `w` ([draws, records]); NaN where undefined. `threshold`
    (chosen on validation) flags `p_adv > threshold`: the deployable operating point."""
    nan = np.full(len(w), np.nan)
    out = dict.fromkeys(METRICS, nan)
    adv = is_adv.astype(bool)
    if p_adv is not None:
        out["detection_auroc"], out["tpr_at_5fpr"] = _auroc_and_tpr(p_adv, adv, w)
        flagged = p_adv > 0.5
        tpr = ratio((w * (flagged & adv)).sum(1), (w * adv).sum(1))
        tnr = ratio((w * (~flagged & ~adv)).sum(1), (w * ~adv).sum(1))
        out["detection_acc"] = (tpr + tnr) / 2
    if p_adv is not None and threshold is not None:
        out["tpr_at_val_threshold"], out["fpr_at_val_threshold"] = flag_rates(
            p_adv > threshold, adv, w
        )
    if classes is not None:
        correct = classes == labels
        out["recovery_acc"] = ratio((w * (correct & adv)).sum(1), (w * adv).sum(1))
        out["clean_acc"] = ratio((w * (correct & ~adv)).sum(1), (w * ~adv).sum(1))
        out["end_to_end_acc"] = ratio((w * correct).sum(1), w.sum(1))
    return out


def flag_rates(flagged: np.ndarray, adv: np.ndarray, w: np.ndarray):
    """(TPR, FPR) of a fixed decision for every row of `w`."""
    tpr = ratio((w * (flagged & adv)).sum(1), (w * adv).sum(1))
    fpr = ratio((w * (flagged & ~adv)).sum(1), (w * ~adv).sum(1))
    return tpr, fpr


def validation_threshold(p_val: np.ndarray, adv_val: np.ndarray, fpr: float = 0.05) -> float:
    """The lowest threshold that flags at most `fpr` of the clean validation records."""
    clean = np.sort(p_val[~adv_val.astype(bool)])
    if not len(clean):
        return 0.5
    return float(clean[min(len(clean) - 1, int(np.ceil(len(clean) * (1 - fpr))) - 1)])


def interval(draws: np.ndarray) -> list[float] | None:
    """The central LEVEL percentile interval of bootstrap draws (None if undefined)."""
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]
