"""Build statistics: stage timers, per-attack tallies, and stats.json summed over tasks."""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from afg_datasets.records import CLEAN, RecordBatch


class StageTimer:
    """Wall seconds per named pipeline stage (reported in stats.json, never in data files)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclass
class AttackTally:
    """Running sums for one attack (or `clean`). An attack counts only against sources the
    target model classifies correctly when clean (`eligible`): a source it already gets wrong
    is not a success; distances are summed over successful attacks only."""

    records: int = 0
    eligible: int = 0  # records whose clean source the model classifies correctly
    successes: int = 0  # clean: misclassified records; attacks: eligible and now fooled
    linf: float = 0.0  # sums over successes (attacks); 0 for clean
    l2: float = 0.0

    def add(self, batch: RecordBatch, eligible: np.ndarray) -> None:
        fooled = (batch.preds != batch.labels) & eligible
        self.records += len(batch.labels)
        self.eligible += int(eligible.sum())
        self.successes += int(fooled.sum())
        self.linf += float(batch.linf[fooled].sum())
        self.l2 += float(batch.l2[fooled].sum())

    def merge(self, other: AttackTally) -> None:
        for name in ("records", "eligible", "successes", "linf", "l2"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, adversarial: bool) -> dict[str, float]:
        if not adversarial:
            accuracy = 1 - self.successes / max(self.records, 1)
            return {"records": self.records, "accuracy": round(accuracy, 6)}
        hits = max(self.successes, 1)
        return {
            "records": self.records,
            "attacked": self.eligible,
            "successes": self.successes,
            "success_rate": round(self.successes / max(self.eligible, 1), 6),
            "mean_linf": round(self.linf / hits, 6),
            "mean_l2": round(self.l2 / hits, 6),
        }


WEAK_SUCCESS = 0.10  # an attack that fools fewer of the sources it attacked is warned of


def weak_attacks(stats: dict[str, Any]) -> list[str]:
    """A warning per attack that succeeded on under 10 % of the sources it attacked: its
    records are mostly the clean image again, whatever `is_adversarial` says (0.9 built 1,000
    MNIST `lbfgs` records, none adversarial, without a word)."""
    return [
        f"attack {name!r} succeeded on {s['successes']} of the {s['attacked']} sources it "
        f"attacked ({s['success_rate']:.1%}, under {WEAK_SUCCESS:.0%}): its records are mostly "
        "unchanged images; raise its budget (eps, iterations) or leave it out"
        for name, s in stats["attacks"].items()
        if s["attacked"] and s["success_rate"] < WEAK_SUCCESS
    ]


def make_stats(setup: dict[str, Any], markers: list[dict], wall: float | None) -> dict[str, Any]:
    """Timings and rates summed over task markers, plus the setup of the process that planned
    (`setup`: tasks/setup.json). `wall` None: the time any task ran (`tasks_span`)."""
    tallies: dict[str, AttackTally] = {}
    for marker in markers:
        for name, sums in marker["tallies"].items():
            tallies.setdefault(name, AttackTally()).merge(AttackTally(**sums))
    records = sum(t.records for t in tallies.values())
    if wall is None:
        wall = tasks_span(markers)
    return {
        "records": records,
        "wall_seconds": round(wall, 3),
        "records_per_s": round(records / wall, 1) if wall else None,
        "peak_rss_mb": max([m["peak_rss_mb"] for m in markers] + [setup.get("peak_rss_mb", 0)]),
        "devices": sorted({m["device"] for m in markers}),
        "torch_threads": sorted({m["torch_threads"] for m in markers}),
        "tasks": {"count": len(markers), "ranks": len({m["worker"] for m in markers})},
        "skipped_sources": sorted(i for ids in skipped_sources(markers).values() for i in ids),
        "target_model": setup.get("target_model", {}),
        "clean": tallies.get(CLEAN, AttackTally()).summary(adversarial=False),
        "attacks": {
            name: t.summary(adversarial=True) for name, t in tallies.items() if name != CLEAN
        },
        "stages": stage_figures(setup["stages"], markers, wall, tallies, records),
    }


def stage_figures(
    setup: dict[str, float],
    markers: list[dict],
    wall: float,
    tallies: dict[str, AttackTally],
    records: int,
) -> dict[str, dict[str, float]]:
    """Per stage, `process_seconds` (summed over the processes that ran it) and `wall_seconds`,
    its share of the build's clock: a setup stage (once, before the tasks) as timed; a task
    stage's process seconds times the tasks' span over their summed process time (tasks run
    side by side), so the stages and `other` (starting processes, finalizing, untimed work)
    add up to the wall. `records_per_s` is records over wall seconds, per-record stages only."""
    summed: dict[str, float] = defaultdict(float)
    for marker in markers:
        for stage, sec in marker["stages"].items():
            summed[stage] += sec
    busy = sum(end - start for m in markers for start, end in task_runs(m))
    scale = tasks_span(markers) / busy if busy > 0 else 1.0
    figures: dict[str, dict[str, float]] = {}
    for name in sorted(set(setup) | set(summed)):
        on_wall = setup.get(name, 0.0) + summed.get(name, 0.0) * scale
        process = setup.get(name, 0.0) + summed.get(name, 0.0)
        figures[name] = {"wall_seconds": round(on_wall, 3), "process_seconds": round(process, 3)}
        kind, _, attack = name.partition("/")
        handled = tallies[attack].records if kind == "attack" else records
        if name in summed and round(on_wall, 3) > 0:  # a per-record stage
            figures[name]["records_per_s"] = round(handled / on_wall, 1)
    staged = sum(f["wall_seconds"] for f in figures.values())
    figures["other"] = {"wall_seconds": round(max(wall - staged, 0.0), 3)}
    return figures


def task_runs(marker: dict) -> list[tuple[float, float]]:
    """(started, finished) of each run that made a task's files: the build's, then each
    `afg extend`'s (`runs`; a marker without it was made in one run)."""
    return [tuple(run) for run in marker.get("runs", [(marker["started"], marker["finished"])])]


def tasks_span(markers: list[dict]) -> float:
    """Seconds during which any task ran (the union of their runs: an extend's days later
    adds its own run's time, not the days between)."""
    runs = sorted(run for m in markers for run in task_runs(m))
    total, reach = 0.0, -math.inf
    for start, end in runs:
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def skipped_sources(markers: list[dict]) -> dict[str, list[str]]:
    """Ids of unreadable source images left out (on_bad_image: skip), by split."""
    skipped: dict[str, list[str]] = {}
    for marker in markers:
        for split, ids in marker.get("skipped", {}).items():
            skipped.setdefault(split, []).extend(ids)
    return {split: sorted(ids) for split, ids in sorted(skipped.items())}
