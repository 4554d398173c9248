"""Units of a build task: quantization to what a PNG stores, and the stats summed over tasks."""

import json

import numpy as np
import pytest
import torch

from afg_datasets import printers
from afg_datasets.building.finalize import BuildResult
from afg_datasets.building.stats import AttackTally, make_stats
from afg_datasets.building.task import quantize
from afg_datasets.records import RecordBatch
from tests.samples import REPO


def test_quantize_keeps_linf_attacks_inside_their_budget_after_rounding():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(64, 1, 8, 8, generator=generator)
    eps = 0.1
    # the worst case for rounding: exactly at the budget, on both sides
    adv = (clean + eps * torch.sign(torch.randn(clean.shape, generator=generator))).clamp(0, 1)
    stored = quantize(adv, clean, eps)
    assert stored.dtype == torch.uint8
    base = clean.mul(255).round()
    assert (stored.float() - base).abs().max() <= np.floor(eps * 255)
    assert ((stored.float() / 255 - clean).abs().max() <= eps + 0.5 / 255).item()


def test_quantize_without_budget_rounds_and_clamps():
    adv = torch.tensor([-0.2, 0.0, 0.5 / 255, 0.4, 1.0, 1.3])
    stored = quantize(adv, torch.zeros_like(adv), None)
    assert stored.tolist() == [0, 0, 0, 102, 255, 255]


def batch(attack, labels, preds, linf, l2):
    n = len(labels)
    return RecordBatch(
        [f"s{i}" for i in range(n)],
        attack,
        "{}",
        np.zeros((n, 2, 2, 1), np.uint8),
        np.array(labels),
        np.array(preds),
        np.array(linf, np.float32),
        np.array(l2, np.float32),
        {},
    )


def marker(tallies, stages, started, finished, worker=1):
    return {
        "tallies": {k: vars(v) for k, v in tallies.items()},
        "stages": stages,
        "started": started,
        "finished": finished,
        "peak_rss_mb": 100.0 + worker,
        "device": "cpu",
        "torch_threads": 2,
        "worker": worker,
    }


def tally(clean: AttackTally, attack: AttackTally, labels, clean_preds, attack_preds, linf, l2):
    """Tally a clean batch and its attacked copy the way a task does."""
    both = np.ones(len(labels), bool)
    clean.add(batch("clean", labels, clean_preds, [0] * len(labels), [0] * len(labels)), both)
    eligible = np.array(clean_preds) == np.array(labels)
    attack.add(batch("pgd", labels, attack_preds, linf, l2), eligible)


def test_stats_sum_tallies_and_stage_figures_add_up_to_the_wall():
    t1 = {"clean": AttackTally(), "pgd": AttackTally()}
    # source 1 is misclassified when clean: its attacked copy is no success, whatever it says
    tally(t1["clean"], t1["pgd"], [0, 1], [0, 0], [1, 0], [0.1, 0.5], [1.0, 9.0])
    t2 = {"clean": AttackTally(), "pgd": AttackTally()}
    # source 2's attack fails: its distance does not enter the means
    tally(t2["clean"], t2["pgd"], [2, 3], [2, 3], [2, 0], [0.9, 0.3], [9.0, 2.0])
    markers = [
        marker(t1, {"attack/pgd": 2.0, "encode": 1.0}, 10.0, 14.0, worker=1),
        marker(t2, {"attack/pgd": 2.0, "encode": 3.0}, 11.0, 20.0, worker=2),
    ]
    setup = {"stages": {"load": 0.5}, "peak_rss_mb": 50.0}
    stats = make_stats(setup, markers, wall=None)
    assert stats["records"] == 8 and stats["wall_seconds"] == 10.0  # 10.0 .. 20.0
    assert stats["clean"] == {"records": 4, "accuracy": 0.75}
    pgd = stats["attacks"]["pgd"]
    assert pgd["records"] == 4 and pgd["attacked"] == 3 and pgd["successes"] == 2
    assert pgd["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert pgd["mean_linf"] == pytest.approx(0.2) and pgd["mean_l2"] == pytest.approx(1.5)
    stages = stats["stages"]
    # 13 process seconds of tasks in a 10 s span: a task stage's wall share is 10/13 of its sum
    assert stages["attack/pgd"] == {"wall_seconds": 3.077, "process_seconds": 4.0} | {
        "records_per_s": 1.3  # 4 pgd records over its 3.077 s
    }
    assert stages["encode"]["process_seconds"] == 4.0 and stages["encode"]["records_per_s"] == 2.6
    assert stages["load"] == {"wall_seconds": 0.5, "process_seconds": 0.5}  # once, before tasks
    assert sum(s["wall_seconds"] for s in stages.values()) == pytest.approx(10.0, abs=0.002)
    assert all(v is not None for s in stages.values() for v in s.values())
    assert stats["peak_rss_mb"] == 102.0 and stats["tasks"] == {"count": 2, "ranks": 2}
    assert make_stats(setup, markers, wall=5.0)["records_per_s"] == 1.6


def test_a_summary_of_stats_written_before_0_11_shows_their_process_seconds(capsys):
    """Re-running a finished 0.10 build prints its stored stats: stages with only `seconds`
    (summed over processes) show them as process seconds and no wall share."""
    stats = json.loads((REPO / "tests/data/corpus-0.2/stats.json").read_text())
    manifest = {"config_hash": "x", "splits": {"train": {"records": 4}}}
    printers.build_summary(BuildResult(REPO, manifest, stats))
    line = next(li for li in capsys.readouterr().out.splitlines() if "attack/fgsm" in li)
    assert [cell.strip() for cell in line.split("│")[2:5]] == ["-", "0.17", "34.6"]


def test_an_extended_corpus_counts_the_time_its_runs_took_not_the_days_between():
    """A task grown by `afg extend` a day later keeps each run: the wall clock of its stats is
    the union of the runs (10 s of build, 5 s of extend), and a stage's wall share is scaled
    by the tasks' own process time (10 + 8 + 5 s)."""
    empty = {"clean": AttackTally(), "pgd": AttackTally()}
    built = marker(empty, {"encode": 10.0}, 0.0, 10.0, worker=1)
    grown = marker(empty, {"encode": 8.0, "attack/pgd": 5.0}, 0.0, 86_405.0, worker=2)
    grown["runs"] = [[0.0, 8.0], [86_400.0, 86_405.0]]
    stats = make_stats({"stages": {}}, [built, grown], wall=None)
    assert stats["wall_seconds"] == 15.0
    assert stats["stages"]["encode"]["wall_seconds"] == pytest.approx(18 * 15 / 23, abs=1e-3)
    assert sum(s["wall_seconds"] for s in stats["stages"].values()) == pytest.approx(15.0)
