"""The adaptive attack (`afg bench --adaptive`): white-box PGD against the whole system.

The attacker knows everything: the target model, the genome encoder, the detector and its
threshold. It runs advertorch's PGD (Linf and L2, with the corpus's budgets) on two hinges
(Carlini & Wagner's margin form): the target model's true-class logit margin and the
detector's logit above its threshold, each pushed below -KAPPA. Once an image is fooled and
unflagged the loss is flat and the image stays. Gradients flow through the target model, the
genome encoder (its differentiable form, `genome_tensors`; how, in the encoder's own words:
`threat_model`) and the recognizer. The non-adaptive row is plain PGD on the target model's
cross-entropy (the corpus's own attack), judged by the same detector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from afg_datasets.attacks import ATTACKS, advertorch_attacks, resolve_params
from afg_datasets.evaluation.intervals import ratio
from afg_datasets.models import TargetModel, tap

KAPPA = 1.0  # logit margin both hinges aim past (survives the uint8 rounding)
ITERATIONS = 20  # when the corpus's budget attack is single-step (fgsm) or minimum-norm
BATCH = 64
# `implied_robust_acc`: Tramer's check (ICML 2022): a detector that the adaptive attacker evades
# on a share e of sources at eps implies a classifier robust at eps / 2 on 1 - e of them (an
# inefficient construction, but a real one): a figure above what robust classifiers reach at
# eps / 2 claims more than the argument allows.
METRICS = ("success_rate", "detection_rate", "evasion_rate", "implied_robust_acc", "recovery_acc")


def threat_model(gradient: str) -> str:
    """The adaptive rows' threat model; `gradient`: how the attack differentiates through the
    corpus's genome encoder (its card file's words, `genome.text`)."""
    return (
        "adaptive white-box: the attacker knows the target model, the genome encoder and the "
        "detector with its threshold, and runs PGD (random start, the corpus's Linf / L2 "
        "budgets, final iterate rounded toward the clean image to uint8 levels) on "
        f"hinge(true-class logit margin + {KAPPA}) + "
        f"hinge(detector logit - threshold logit + {KAPPA}), differentiating through "
        f"the target model, the genome encoder ({gradient}) and the recognizer. "
        "Non-adaptive: PGD on the target model's cross-entropy alone, same budget. Rates are "
        "over correctly classified clean test sources; detection at the validation threshold "
        "(5 % FPR on clean validation records)"
    )


@dataclass(frozen=True)
class Budget:
    norm: str  # linf | l2
    eps: float
    nb_iter: int
    eps_iter: float
    origin: str  # where the budget comes from


def budgets(
    attacks: Mapping[str, Mapping[str, Any]], train: Mapping[str, np.ndarray]
) -> list[Budget]:
    """Per norm, the corpus's own budget: its largest-eps bounded attack of that norm (its
    iterations and step); for L2 without one, the median L2 distance of the successful
    minimum-norm L2 attacks in the train split."""
    out = []
    for norm in ("linf", "l2"):
        bounded = [
            (name, resolve_params(name, params))
            for name, params in attacks.items()
            if ATTACKS[name].budget == norm
        ]
        if bounded:
            name, p = max(bounded, key=lambda item: (item[1]["eps"], "nb_iter" in item[1]))
            eps, steps = float(p["eps"]), int(p.get("nb_iter", ITERATIONS))
            step = float(p.get("eps_iter", 2.5 * eps / steps))
            out.append(Budget(norm, eps, steps, step, f"attack {name!r}"))
            continue
        family = [a for a in attacks if ATTACKS[a].family == norm]
        rows = np.isin(train["attack"], family) & train["success"]
        if rows.any():
            eps = float(np.median(train["l2"][rows]))
            origin = f"median L2 of successful {', '.join(family)} train records"
            out.append(Budget(norm, eps, ITERATIONS, 2.5 * eps / ITERATIONS, origin))
    return out


def perturb(
    target: TargetModel,
    layers: list[str],
    system,
    threshold: float,
    images: torch.Tensor,
    labels: torch.Tensor,
    budget: Budget,
    seed: int,
) -> torch.Tensor:
    """PGD adversarials of [0,1] `images` (on the uint8 grid), the perturbation rounded toward
    zero to whole uint8 levels so it stays inside the budget; `system` None attacks the target
    model alone (non-adaptive, cross-entropy)."""
    classes = {"linf": "LinfPGDAttack", "l2": "L2PGDAttack"}
    loss = None if system is None else _hinges(threshold)  # None: advertorch's cross-entropy
    attack = getattr(advertorch_attacks(), classes[budget.norm])(
        _combined(target, layers, system),
        loss_fn=loss,
        eps=budget.eps,
        nb_iter=budget.nb_iter,
        eps_iter=budget.eps_iter,
        rand_init=True,
        clip_min=0.0,
        clip_max=1.0,
    )
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(images), BATCH):
            x, y = images[start : start + BATCH], labels[start : start + BATCH]
            out.append(attack.perturb(x.clone(), y.clone()).detach())
    delta = torch.cat(out) - images
    return images + delta.mul(255).add(delta.sign() * 1e-4).trunc().div(255)


def _combined(target: TargetModel, layers: list[str], system):
    """x -> [class logits of the target model | the detector's adversarial logit]."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        if system is None:
            return target(x)
        with tap(target, layers) as acts:
            logits = target(x)
        adv_logit, _ = system(x, acts)
        return torch.cat([logits, adv_logit.float()[:, None]], 1)

    return predict


def _hinges(threshold: float):
    """The adaptive loss (maximized): minus the two hinges, summed over the batch."""
    p = min(max(threshold, 1e-6), 1 - 1e-6)
    threshold_logit = math.log(p / (1 - p))

    def loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, adv_logit = outputs[:, :-1], outputs[:, -1]
        true = logits.gather(1, labels[:, None])[:, 0]
        other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        fool = F.relu(true - other + KAPPA)
        evade = F.relu(adv_logit - threshold_logit + KAPPA)
        return -(fool + evade).sum()

    return loss


@torch.no_grad()
def outcome(
    target: TargetModel,
    layers: list[str],
    system,
    threshold: float,
    adversarial: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, np.ndarray]:
    """Per attacked source: fooled the target model, flagged by the detector, class recovered."""
    parts: dict[str, list[np.ndarray]] = {"success": [], "flagged": [], "recovered": []}
    for start in range(0, len(adversarial), BATCH):
        x, y = adversarial[start : start + BATCH], labels[start : start + BATCH]
        with tap(target, layers) as acts:
            pred = target(x).argmax(1)
        adv_logit, class_logits = system(x, acts)
        parts["success"].append((pred != y).numpy())
        parts["flagged"].append((torch.sigmoid(adv_logit.float()) > threshold).numpy())
        recovered = None if class_logits is None else (class_logits.argmax(1) == y).numpy()
        parts["recovered"].append(recovered)
    return {
        k: None if v[0] is None else np.concatenate(v)  # type: ignore[arg-type]
        for k, v in parts.items()
    }


def adaptive_metrics(result: Mapping[str, np.ndarray | None], w: np.ndarray) -> dict:
    """The METRICS for every row of `w` (one weight per attacked source)."""
    success, flagged = result["success"], result["flagged"]
    out = {
        "success_rate": ratio((w * success).sum(1), w.sum(1)),
        "detection_rate": ratio((w * (success & flagged)).sum(1), (w * success).sum(1)),
        "evasion_rate": ratio((w * (success & ~flagged)).sum(1), w.sum(1)),
        "recovery_acc": np.full(len(w), np.nan),
    }
    out["implied_robust_acc"] = 1 - out["evasion_rate"]
    if result["recovered"] is not None:
        hits = success & result["recovered"]
        out["recovery_acc"] = ratio((w * hits).sum(1), (w * success).sum(1))
    return out
