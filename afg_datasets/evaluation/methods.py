"""The methods `afg bench` compares: the AFG recognizer and its baselines (raw pixels,
Mahalanobis, LID, the target model alone). Each is (data, manifest, seed, quick) -> Scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from afg_datasets.layout import SPLITS
from afg_datasets.recognizer.data import to_tensors
from afg_datasets.recognizer.recognizer import recognizer_inputs
from afg_datasets.recognizer.training import TrainConfig, evaluate, fit_recognizer


@dataclass
class Scores:
    """A method's output on the test records: p(adversarial) and/or the recovered class."""

    p_adv: np.ndarray | None
    classes: np.ndarray | None


def _recognizer(inputs: Callable[[dict], list[str]], objective: str):
    def run(data, manifest, seed, quick) -> Scores:
        names = inputs(manifest)
        tensors = {s: to_tensors(data[s], names) for s in SPLITS}
        net, _ = fit_recognizer(
            names,
            tensors["train"],
            tensors["validation"],
            len(manifest["source"]["class_names"]),
            objective,
            TrainConfig(epochs=10 if quick else 30, seed=seed),
        )
        _, logits = evaluate(net, tensors["test"])
        p_adv, classes = net.readout(logits, tensors["test"]["pred"])
        return Scores(p_adv.numpy(), classes.numpy())

    return run


def _detector(score_features: Callable[..., list[np.ndarray]]):
    """Per-layer scores -> logistic regression fitted on train (clean vs adversarial)."""

    def run(data, manifest, seed, quick) -> Scores:
        feats = {s: score_features(data, s, seed) for s in ("train", "test")}
        x = {s: np.stack(f, axis=1) for s, f in feats.items()}
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        clf.fit(x["train"], data["train"]["is_adversarial"])
        return Scores(clf.predict_proba(x["test"])[:, 1], None)

    return run


def mahalanobis_scores(data, split, seed) -> list[np.ndarray]:
    """Lee et al. 2018: min class-conditional Mahalanobis distance, tied covariance per layer
    (fitted on clean train records; no input pre-processing)."""
    train = data["train"]
    clean = train["attack"] == "clean"
    scores = []
    for layer, feats in enumerate(data["features"][split]):
        fit = data["features"]["train"][layer][clean]
        labels = train["label"][clean]
        means = np.stack([fit[labels == c].mean(0) for c in np.unique(labels)])
        centred = fit - means[np.searchsorted(np.unique(labels), labels)]
        precision = np.linalg.pinv(np.cov(centred, rowvar=False) + 1e-6 * np.eye(fit.shape[1]))
        diff = feats[:, None, :] - means[None]
        dist = np.einsum("ncd,de,nce->nc", diff, precision, diff)
        scores.append(dist.min(1))
    return scores


def lid_scores(data, split, seed, k: int = 20, reference: int = 500) -> list[np.ndarray]:
    """Ma et al. 2018: maximum-likelihood LID against a random reference set of clean train
    records, per layer."""
    clean = np.flatnonzero(data["train"]["attack"] == "clean")
    rng = np.random.default_rng(seed)
    ref = rng.choice(clean, size=min(reference, len(clean)), replace=False)
    scores = []
    for layer, feats in enumerate(data["features"][split]):
        dist = torch.cdist(
            torch.from_numpy(feats).double(),
            torch.from_numpy(data["features"]["train"][layer][ref]).double(),
        )
        dist = torch.where(dist < 1e-12, torch.full_like(dist, float("inf")), dist)
        knn = dist.topk(k, largest=False).values.clamp_min(1e-12)
        lid = -1.0 / (torch.log(knn / knn[:, -1:]).mean(1) - 1e-12)
        scores.append(lid.numpy())
    return scores


def _target_model(data, manifest, seed, quick) -> Scores:
    return Scores(None, data["test"]["pred"])


METHODS: dict[str, Callable[..., Scores]] = {
    "afg": _recognizer(recognizer_inputs, "two_head"),
    "afg_mixed": _recognizer(recognizer_inputs, "mixed"),
    "raw_pixels": _recognizer(lambda manifest: ["image"], "two_head"),
    "mahalanobis": _detector(mahalanobis_scores),
    "lid": _detector(lid_scores),
    "target_model": _target_model,
}
