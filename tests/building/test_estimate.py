"""`afg estimate` and reduced precision: a plan with the documented keys that writes nothing,
and bf16 builds that verify and load."""

from __future__ import annotations

import json

import pytest
from datasets import load_dataset

from afg_datasets.building import build_corpus
from afg_datasets.config import load_config
from afg_datasets.corpus.corpus import verify_corpus
from afg_datasets.genome import ENCODERS
from afg_datasets.perf.estimate import estimate
from tests.samples import run_cli

KEYS = {"sources", "devices", "device", "wall_seconds", "bytes", "records", "stages"}


def test_estimate_json_has_the_documented_keys_and_writes_nothing(tmp_path, model_cache):
    env = {"OMP_NUM_THREADS": "1"}
    result = run_cli(
        "estimate",
        "--sources",
        "5000",
        "--devices",
        "2",
        "--calibration",
        "16",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= KEYS
    assert report["sources"] == 5000 and report["devices"] == 2 and report["device"] == "cpu"
    assert report["wall_seconds"] > 0 and report["bytes"] > 0
    assert report["records"] == 5000 * 4  # clean + fgsm, pgd, cw_l2
    stages = {s["stage"]: s for s in report["stages"]}
    assert {"attack/fgsm", "attack/pgd", "attack/cw_l2", "encode", "predict", "write"} <= set(
        stages
    )
    assert all(s["seconds_per_source"] > 0 for s in report["stages"])
    assert abs(sum(s["share"] for s in report["stages"]) - 1) < 0.01
    per_record = report["bytes_per_record"]
    for fmt in ("parquet", "webdataset"):
        groups = per_record[fmt]
        assert set(groups) == {"image", "genome", "metadata", "overhead", "total"}
        assert all(groups[g] > 0 for g in ("image", "genome", "metadata"))
        parts = sum(v for k, v in groups.items() if k != "total")
        assert abs(parts - groups["total"]) < 1
    total = per_record["parquet"]["total"] + per_record["webdataset"]["total"]
    assert abs(total - per_record["total"]) < 5  # model files are not records' bytes
    assert abs(report["bytes"] - per_record["total"] * report["records"]) < report["records"]
    assert list(tmp_path.iterdir()) == [], "nothing written into the working directory"


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_estimate_calibrates_every_encoder(encoder, model_cache):
    """A stateful encoder (groupbasis's fitted basis) is fitted on the calibration images as a
    build fits it; every encoder gets its own bytes per record."""
    digits = load_config("digits", encoder=encoder)
    cfg = digits.replace(limit=8, attacks={"fgsm": digits.attacks["fgsm"]})
    report = estimate(cfg, None, 1, "cpu", calibration=8)
    assert report["records"] == 2 * report["sources"]  # clean + fgsm
    assert report["bytes_per_record"]["parquet"]["genome"] > 0


def test_bf16_builds_verify_and_load_with_their_own_hash(small_config, tmp_path):
    bf16 = small_config.replace(limit=12, precision="bf16")
    assert bf16.config_hash() != small_config.replace(limit=12).config_hash()
    result = build_corpus(bf16, tmp_path / "afg", progress=False)
    assert result.manifest["config"]["precision"] == "bf16"
    assert verify_corpus(tmp_path / "afg") == []
    assert "bf16" in (tmp_path / "afg" / "README.md").read_text()
    dataset = load_dataset(str(tmp_path / "afg"), "all")
    assert sum(len(split) for split in dataset.values()) == 12 * 4


def test_the_projection_deals_tasks_to_task_processes_as_a_pool_does():
    """`--limit 300` of the digits builder is one task of 256 sources and one of 44: with two
    task processes the build waits for the larger; the estimate said 300 sources' worth
    before 0.11 (one process per device)."""
    from afg_datasets.building.plan import make_tasks
    from afg_datasets.config import load_config
    from afg_datasets.perf.estimate import _makespan

    cfg = load_config("digits")
    limited, full = make_tasks(cfg, 300), make_tasks(cfg, 1797)
    assert _makespan(limited, devices=1, workers=2, per_source=0.1) == pytest.approx(25.6)
    assert _makespan(limited, devices=1, workers=1, per_source=0.1) == pytest.approx(30.0)
    assert _makespan(full, devices=2, workers=2, per_source=0.1) == pytest.approx(51.2)
