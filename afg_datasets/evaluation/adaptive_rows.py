"""The bench's adaptive rows: per budget and differentiable method, the non-adaptive PGD
(classifier only) beside the adaptive one (through each seed's whole system, `adaptive.py`),
with seed mean, std and interval over test source images."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.evaluation import adaptive
from afg_datasets.evaluation.intervals import seed_mean_draws
from afg_datasets.evaluation.methods import Scores
from afg_datasets.evaluation.scoring import aggregate, paired_weights
from afg_datasets.records import CLEAN


def run_adaptive(data, corpus: Corpus, target, systems: dict[str, list[Scores]], quick, progress):
    """Per budget and attackable method: the non-adaptive PGD (classifier only, computed once)
    and the adaptive one (through each seed's system), with intervals over test sources."""
    layers = corpus.layers
    clean = data["test"]["attack"] == CLEAN
    images = torch.from_numpy(data["test"]["image"][clean]).float().div(255)
    labels = torch.from_numpy(data["test"]["label"][clean].astype(np.int64))
    ids = data["test"]["source_id"][clean]
    if quick:
        images, labels, ids = images[:64], labels[:64], ids[:64]
    budgets = adaptive.budgets(corpus.facts.attack_params, data["train"])
    rows = []
    for budget in budgets:
        weights = paired_weights(ids, f"adaptive/{budget.norm}")
        plain = adaptive.perturb(target, layers, None, 0.5, images, labels, budget, seed=0)
        for method, per_seed in systems.items():
            if per_seed[0].system is None:
                continue
            progress(f"adaptive/{budget.norm}: {method}")
            outcomes: dict[str, list] = {"non-adaptive": [], "adaptive": []}
            for seed, scores in enumerate(per_seed):
                args = (target, layers, scores.system, scores.threshold)
                attacked = adaptive.perturb(*args, images, labels, budget, seed)
                for mode, x in (("non-adaptive", plain), ("adaptive", attacked)):
                    outcomes[mode].append(adaptive.outcome(*args, x, labels))
            for mode, results in outcomes.items():
                row = {"method": method, "attack": f"pgd_{budget.norm}", "mode": mode}
                rows.append(row | _adaptive_row(results, weights))
    return {
        "threat_model": adaptive.threat_model(corpus.facts.encoder_text["gradient"]),
        "budgets": [asdict(budget) for budget in budgets],
        "rows": rows,
    }


def _adaptive_row(results: list[dict], weights: np.ndarray) -> dict[str, Any]:
    """Seed mean, std and interval of the adaptive metrics of one method, budget and mode."""
    n = weights.shape[1]
    per_seed = [_plain(adaptive.adaptive_metrics(r, np.ones((1, n)))) | {"n": n} for r in results]
    draws = [adaptive.adaptive_metrics(r, weights) for r in results]
    return aggregate(
        per_seed, seed_mean_draws(draws, adaptive.METRICS, "adaptive"), adaptive.METRICS
    )


def _plain(values: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {k: None if np.isnan(v[0]) else float(v[0]) for k, v in values.items()}
