"""The methods `afg bench` compares: the AFG recognizer and its baselines (raw pixels with
matched capacity, Mahalanobis, LID, the target model alone). Each is (BenchInputs, seed) ->
Scores on the test records, with a threshold chosen on validation and, where it can be
differentiated, the whole system for the adaptive attack."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.evaluation.activations import layer_activations
from afg_datasets.evaluation.intervals import validation_threshold
from afg_datasets.genome import ENCODERS
from afg_datasets.layout import SPLITS
from afg_datasets.models import TargetModel
from afg_datasets.recognizer.data import to_tensors
from afg_datasets.recognizer.model import RecognizerNet, matched_width, parameter_count
from afg_datasets.recognizer.training import TrainConfig, evaluate, fit_recognizer
from afg_datasets.records import CLEAN

# (images in [0,1], the target model's activations of them) -> (adversarial logit, class
# logits or None), differentiable end to end: what the adaptive attack attacks.
System = Callable[
    [torch.Tensor, Mapping[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor | None]
]


@dataclass(frozen=True)
class BenchInputs:
    """What every method sees in one setting: the protocol-filtered splits (held-out attacks
    already removed from train and validation), pooled activations, the corpus model."""

    splits: dict[str, dict[str, np.ndarray]]
    pooled: dict[str, list[np.ndarray]]  # split -> per layer [N, channels]
    corpus: Corpus
    target: TargetModel
    quick: bool
    flat: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # split -> per layer
    show_epochs: bool = False  # a progress bar per training run, an epoch a step

    @property
    def layers(self) -> list[str]:
        return self.corpus.layers

    @property
    def num_classes(self) -> int:
        return self.corpus.facts.num_classes


@dataclass
class Scores:
    """A method's output on the test records: p(adversarial) and/or the recovered class;
    `threshold` flags p_adv > threshold (5 % of clean validation records flagged)."""

    p_adv: np.ndarray | None
    classes: np.ndarray | None
    threshold: float | None = None
    system: System | None = None


def _val_threshold(inputs: BenchInputs, p_val: np.ndarray) -> float:
    return validation_threshold(p_val, inputs.splits["validation"]["is_adversarial"])


# ---- recognizers (AFG, raw pixels) ----------------------------------------------------------


def afg_parameters(inputs: BenchInputs, objective: str = "two_head") -> int:
    """The parameter count of the AFG recognizer, which the raw-pixel control matches."""
    names = inputs.corpus.genome_columns
    return parameter_count(RecognizerNet(_shapes(inputs, names), inputs.num_classes, objective))


def raw_pixel_width(inputs: BenchInputs, objective: str = "two_head") -> int:
    target = afg_parameters(inputs, objective)
    return matched_width(_shapes(inputs, ["image"]), inputs.num_classes, objective, target)


def _shapes(inputs: BenchInputs, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    return {n: tuple(inputs.splits["train"][n].shape[1:]) for n in names}


def _recognizer(columns: Callable[[Corpus], list[str]], objective: str, matched: bool = False):
    def run(inputs: BenchInputs, seed: int) -> Scores:
        names = columns(inputs.corpus)
        tensors = {s: to_tensors(inputs.splits[s], names) for s in SPLITS}
        net, _ = fit_recognizer(
            names,
            tensors["train"],
            tensors["validation"],
            inputs.num_classes,
            objective,
            TrainConfig(epochs=10 if inputs.quick else 30, seed=seed),
            width=raw_pixel_width(inputs, objective) if matched else 16,
            progress=inputs.show_epochs,
        )
        p = {}
        for split in ("validation", "test"):
            logits = evaluate(net, tensors[split])[1]
            p[split], classes = net.readout(logits, tensors[split]["pred"])
        threshold = _val_threshold(inputs, p["validation"].numpy())
        system = _recognizer_system(net, names, inputs) if objective == "two_head" else None
        return Scores(p["test"].numpy(), classes.numpy(), threshold, system)

    return run


def _recognizer_system(net: RecognizerNet, names: list[str], inputs: BenchInputs):
    """The recognizer on new images: raw pixels directly, genomes through the corpus's encoder
    (only encoders with a differentiable form, `genome_tensors`)."""
    encoder = None
    if names != ["image"]:
        if not getattr(ENCODERS[inputs.corpus.encoder], "genome_tensors", None):
            return None
        encoder = inputs.corpus.genome_encoder(inputs.target)

    def system(images: torch.Tensor, acts: Mapping[str, torch.Tensor]):
        features = {"image": images} if encoder is None else encoder.genome_tensors(acts)
        logits = net(features)
        return logits[:, 0], logits[:, 1:]

    return system


# ---- detectors (Mahalanobis, LID) -----------------------------------------------------------


class Mahalanobis:
    """Lee et al. 2018: per layer, the min class-conditional Mahalanobis distance of the
    channel-pooled activations, tied covariance fitted on the clean train records (no input
    pre-processing)."""

    pool = True

    def __init__(self, inputs: BenchInputs, seed: int):
        train = inputs.splits["train"]
        clean = train["attack"] == CLEAN
        labels = train["label"][clean]
        classes = np.unique(labels)
        self.means, self.precisions = [], []
        for fit in features(inputs, "train", self.pool, np.flatnonzero(clean)):
            fit = fit.numpy()
            means = np.stack([fit[labels == c].mean(0) for c in classes])
            centred = fit - means[np.searchsorted(classes, labels)]
            cov = np.cov(centred, rowvar=False) + 1e-6 * np.eye(fit.shape[1])
            self.means.append(torch.from_numpy(means))
            self.precisions.append(torch.from_numpy(np.linalg.pinv(cov)))

    def score(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for f, means, precision in zip(feats, self.means, self.precisions, strict=True):
            diff = f[:, None, :] - means[None]
            out.append(torch.einsum("ncd,de,nce->nc", diff, precision, diff).min(1).values)
        return torch.stack(out, 1)


class LID:
    """Ma et al. 2018: maximum-likelihood local intrinsic dimensionality of each layer's full
    (flattened) activations against a reference set of clean train records; every scored
    record is a validation or test record, so no record meets itself or its own source."""

    pool = False
    k = 20
    reference = 500

    def __init__(self, inputs: BenchInputs, seed: int):
        clean = np.flatnonzero(inputs.splits["train"]["attack"] == CLEAN)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(clean, size=min(self.reference, len(clean)), replace=False))
        self.refs = features(inputs, "train", self.pool, rows)

    def score(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for f, ref in zip(feats, self.refs, strict=True):
            knn = torch.cdist(f, ref).topk(self.k, largest=False).values.clamp_min(1e-12)
            out.append(-1.0 / (torch.log(knn / knn[:, -1:]).mean(1) - 1e-12))
        return torch.stack(out, 1)


def features(inputs: BenchInputs, split: str, pool: bool, rows=None) -> list[torch.Tensor]:
    """Per layer, float64 features of a split's records: pooled (precomputed) or flattened
    (recomputed from the stored images; a whole split once per setting, for every seed)."""
    if pool:
        arrays = inputs.pooled[split]
        return [torch.from_numpy(a if rows is None else a[rows]).double() for a in arrays]
    if rows is None and split in inputs.flat:
        return inputs.flat[split]
    images = inputs.splits[split]["image"]
    images = images if rows is None else images[rows]
    flat = layer_activations(inputs.target, images, inputs.layers, pool=False)
    out = [torch.from_numpy(a).double() for a in flat]
    if rows is None:
        inputs.flat[split] = out
    return out


def _detector(kind: type[Mahalanobis] | type[LID], adaptive: bool):
    """Per-layer scores -> logistic regression fitted on the validation records (Lee et al.:
    held-out data, clean vs adversarial); the threshold comes from the same records."""

    def run(inputs: BenchInputs, seed: int) -> Scores:
        detector = kind(inputs, seed)
        x = {s: detector.score(features(inputs, s, kind.pool)) for s in ("validation", "test")}
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        clf.fit(x["validation"].numpy(), inputs.splits["validation"]["is_adversarial"])
        p = {s: clf.predict_proba(x[s].numpy())[:, 1] for s in x}

        def system(images: torch.Tensor, acts: Mapping[str, torch.Tensor]):
            layers = [acts[name] for name in inputs.layers]
            feats = [a.flatten(2).mean(2) if kind.pool else a.flatten(1) for a in layers]
            return _logit(clf, detector.score([f.double() for f in feats])), None

        threshold = _val_threshold(inputs, p["validation"])
        return Scores(p["test"], None, threshold, system if adaptive else None)

    return run


def _logit(clf: Pipeline, z: torch.Tensor) -> torch.Tensor:
    """The fitted scaler + logistic regression in torch (differentiable)."""
    scaler, lr = clf[0], clf[1]
    scaled = (z - torch.from_numpy(scaler.mean_)) / torch.from_numpy(scaler.scale_)
    return (scaled @ torch.from_numpy(lr.coef_[0]) + float(lr.intercept_[0])).float()


def _target_model(inputs: BenchInputs, seed: int) -> Scores:
    return Scores(None, inputs.splits["test"]["pred"])


METHODS: dict[str, Callable[[BenchInputs, int], Scores]] = {
    "afg": _recognizer(attrgetter("genome_columns"), "two_head"),
    "afg_mixed": _recognizer(attrgetter("genome_columns"), "mixed"),
    "raw_pixels": _recognizer(lambda corpus: ["image"], "two_head", matched=True),
    "mahalanobis": _detector(Mahalanobis, adaptive=True),
    "lid": _detector(LID, adaptive=False),  # kNN over a reference set: not attacked adaptively
    "target_model": _target_model,
}
