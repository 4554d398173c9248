"""`afg bench A B C`: which genome carries the attack. Corpora that share their sources, records
and target model (a build and its `afg encode` re-encodings) are benchmarked together: each
genome's AFG recognizer beside raw pixels matched to its capacity, and once the genome-free
baselines (Mahalanobis, LID, the target model); every genome minus raw pixels and minus
Mahalanobis with the paired interval. The test records are the same for all, so the bootstrap
resamples of test source images are too (`scoring.paired_weights` draws them from the source ids).
With `attack_systems`, the adaptive white-box rows of every differentiable system (each
genome's recognizer through its own encoder, raw pixels, Mahalanobis) on the same sources."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import CorpusError
from afg_datasets.evaluation.adaptive_rows import run_adaptive
from afg_datasets.evaluation.protocol import (
    BenchCorpus,
    check_classes,
    protocol_facts,
    settings,
    versions,
)
from afg_datasets.evaluation.report import write_outputs
from afg_datasets.evaluation.scoring import compare, evaluate_method
from afg_datasets.layout import SPLITS

PER_GENOME = ("afg", "raw_pixels")  # trained on each corpus (raw pixels matched to its genome)
SHARED = ("mahalanobis", "lid", "target_model")  # genome-free: once


@dataclass
class Genome(BenchCorpus):
    """One corpus of the comparison, labelled by its encoder."""

    label: str = ""


def load_genomes(corpora: Sequence[Corpus]) -> list[Genome]:
    """The corpora, verified, labelled by encoder (and config hash where two share one); a
    CorpusError unless they share attacks, target model and test records."""
    for corpus in corpora:  # verified once, before any record is read
        corpus.verify()
    for corpus in corpora[1:]:
        _refuse_difference(corpora[0].root, corpus.root, corpora[0].facts.difference(corpus.facts))
    genomes = []
    for corpus in corpora:
        genomes.append(Genome(**vars(BenchCorpus.read(corpus)), label=corpus.encoder))
    labels = [g.label for g in genomes]
    for g in genomes:
        if labels.count(g.label) > 1:
            g.label = f"{g.label}-{g.corpus.facts.config_hash[:6]}"
    first = genomes[0]
    for other in genomes[1:]:
        same = np.array_equal(other.data["test"]["key"], first.data["test"]["key"])
        _refuse_difference(first.root, other.root, None if same else "different test records")
    return genomes


def _refuse_difference(first: Path, root: Path, why: str | None) -> None:
    if why:
        raise CorpusError(
            f"{root} and {first} have {why}: a genome comparison needs corpora that share "
            "their records (a build and its `afg encode` re-encodings)"
        )


def run_genome_bench(
    corpora: Sequence[Corpus],
    out: str | Path,
    seeds: int = 3,
    quick: bool = False,
    unseen: str = "all",
    attack_systems: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    show_epochs: bool = False,
) -> dict[str, Any]:
    """Every genome beside the controls, per setting (seen / unseen / family), one report;
    `attack_systems` adds the adaptive attack on every system trained in the seen setting."""
    start = time.perf_counter()
    genomes = load_genomes(corpora)
    seeds = 1 if quick else seeds
    attacks = genomes[0].corpus.attacks
    results, comparisons, systems = [], [], {}
    for setting, held_out in settings(attacks, unseen):
        data = genomes[0].data
        keep = {s: ~np.isin(data[s]["attack"], held_out) if s != "test" else None for s in SPLITS}
        scored = [*held_out] if held_out else [*attacks, "overall"]
        boots: dict[str, dict[str, dict]] = {}
        rows: dict[str, dict[str, dict]] = {}
        runs = [(g, m, f"{m}:{g.label}") for g in genomes for m in PER_GENOME]
        runs += [(genomes[0], m, m) for m in SHARED]
        for number, (genome, method, name) in enumerate(runs):
            progress(f"{setting}{'/' + ','.join(held_out) if held_out else ''}: {name}")
            inputs = genome.inputs(keep, quick, show_epochs)
            if number == 0:  # the first genome's splits, before anything is trained
                check_classes(genome.root, inputs.splits, setting, held_out)
            evaluated, per_seed = evaluate_method(method, setting, inputs, seeds, scored, {})
            if setting == "seen":
                systems[name] = per_seed
            for attack, (row, mean_draws) in evaluated.items():
                results.append(row | {"method": name, "held_out": held_out})
                boots.setdefault(attack, {})[name] = mean_draws
                rows.setdefault(attack, {})[name] = row
        for attack in boots:
            for genome in genomes:
                for versus in (f"raw_pixels:{genome.label}", "mahalanobis"):
                    for item in compare(boots[attack], rows[attack], f"afg:{genome.label}", versus):
                        comparisons.append({"setting": setting, "attack": attack, **item})
    first = genomes[0]
    facts = [protocol_facts(g.data, attacks, seeds, quick, g.corpus, g.target) for g in genomes]
    report = {
        "corpus": first.corpus.facts.identity | {"path": str(first.root)},
        "genomes": [
            {
                "label": g.label,
                "path": str(g.root),
                "config_hash": g.corpus.facts.config_hash,
                "genome": g.corpus.facts.genome,
                "parameters": own["parameters"],  # each genome's capacity, and its control's
                "raw_pixels_width": own["raw_pixels_width"],
            }
            for g, own in zip(genomes, facts, strict=True)
        ],
        "protocol": facts[0],
        "versions": versions(),
        "results": results,
        "comparisons": comparisons,
    }
    if attack_systems:
        report["adaptive"] = run_adaptive(
            first.data, first.corpus, first.target, systems, quick, progress
        )
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_outputs(Path(out), report, {}, attacks)
    return report
