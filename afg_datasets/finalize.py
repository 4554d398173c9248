"""`afg finalize`: manifest, stats and card from the plan and every task's marker.

Runs at the end of a single-process build, and by hand (or by the last rank) after a build
split across processes, GPUs or nodes. Idempotent: finalizing twice writes the same manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afg_datasets.errors import OutputDirError
from afg_datasets.models import INFO_FILE, MODEL_FILE
from afg_datasets.plan import (
    MANIFEST_FILE,
    STATS_FILE,
    TASKS_DIR,
    file_entry,
    plan_tasks,
    read_marker,
    read_plan,
    write_json,
)
from afg_datasets.records import CLEAN, RecordBatch

SETUP_FILE = f"{TASKS_DIR}/setup.json"


@dataclass
class AttackTally:
    """Running sums for one attack (or `clean`): records, fooled predictions, distances."""

    records: int = 0
    successes: int = 0
    linf: float = 0.0
    l2: float = 0.0

    def add(self, batch: RecordBatch) -> None:
        self.records += len(batch.labels)
        self.successes += int((batch.preds != batch.labels).sum())
        self.linf += float(batch.linf.sum())
        self.l2 += float(batch.l2.sum())

    def merge(self, other: AttackTally) -> None:
        for name in ("records", "successes", "linf", "l2"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, adversarial: bool) -> dict[str, float]:
        n = max(self.records, 1)
        rate = self.successes / n
        if not adversarial:
            return {"records": self.records, "accuracy": round(1 - rate, 6)}
        return {
            "records": self.records,
            "success_rate": round(rate, 6),
            "mean_linf": round(self.linf / n, 6),
            "mean_l2": round(self.l2 / n, 6),
        }


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]
    stats: dict[str, Any]
    tasks_run: list[int] = field(default_factory=list)


def task_markers(out: Path, plan: dict[str, Any]) -> tuple[list[dict], list[int]]:
    """(markers of complete tasks, ids of incomplete tasks), in task order."""
    markers, missing = [], []
    for task in plan_tasks(plan):
        marker = read_marker(out, task)
        if marker is None:
            missing.append(task.id)
        else:
            markers.append(marker)
    return markers, missing


def finalize(out: str | Path, wall: float | None = None) -> BuildResult:
    """Write stats.json, the card and manifest.json (last) once every task is complete."""
    from afg_datasets.card import write_card

    out = Path(out)
    plan = read_plan(out)
    markers, missing = task_markers(out, plan)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise OutputDirError(
            f"{out}: {len(missing)} of {len(plan['tasks'])} tasks are not complete ({shown}); "
            "run the same build-shards command on this --out to finish them"
        )
    manifest = make_manifest(out, plan, markers)
    stats = make_stats(out, markers, wall)
    write_json(out / STATS_FILE, stats)
    write_card(out, manifest, stats)
    write_json(out / MANIFEST_FILE, manifest)
    return BuildResult(out, manifest, stats)


def make_manifest(out: Path, plan: dict[str, Any], markers: list[dict]) -> dict[str, Any]:
    data_files = sorted((f for m in markers for f in m["files"]), key=lambda e: e["path"])
    model_dir = out / "model"
    model_files = [file_entry(out, p, None) for p in sorted(model_dir.iterdir())]
    weights = next(e for e in model_files if e["path"] == f"model/{MODEL_FILE}")
    info = json.loads((model_dir / INFO_FILE).read_text())
    return {
        "name": plan["config"]["name"],
        "config": plan["config"],
        "config_hash": plan["config_hash"],
        "package_version": plan["package_version"],
        "seeds": plan["seeds"],
        "source": plan["source"],
        "model": {
            "sha256": weights["sha256"],
            "path": f"model/{MODEL_FILE}",
            **info,
        },
        "layers": plan["layers"],
        "attacks": plan["attacks"],
        "features": plan["features"],
        "splits": plan["splits"],
        "tasks": len(plan["tasks"]),
        "files": data_files + model_files,
    }


def make_stats(out: Path, markers: list[dict], wall: float | None) -> dict[str, Any]:
    """Timings and rates summed over tasks (plus the setup of the process that planned)."""
    setup_path = out / SETUP_FILE
    setup = json.loads(setup_path.read_text()) if setup_path.is_file() else {"stages": {}}
    tallies: dict[str, AttackTally] = {}
    seconds: dict[str, float] = dict(setup["stages"])
    for marker in markers:
        for name, sums in marker["tallies"].items():
            tallies.setdefault(name, AttackTally()).merge(AttackTally(**sums))
        for stage, sec in marker["stages"].items():
            seconds[stage] = seconds.get(stage, 0.0) + sec
    records = sum(t.records for t in tallies.values())
    if wall is None:  # finalized apart from the build: first task start to last task end
        wall = max(m["finished"] for m in markers) - min(m["started"] for m in markers)

    def stage_records(stage: str) -> int | None:
        kind, _, attack = stage.partition("/")
        if stage in setup["stages"]:
            return None  # once per process, not per record
        return tallies[attack].records if kind == "attack" else records

    return {
        "records": records,
        "wall_seconds": round(wall, 3),
        "records_per_s": round(records / wall, 1) if wall else None,
        "peak_rss_mb": max([m["peak_rss_mb"] for m in markers] + [setup.get("peak_rss_mb", 0)]),
        "devices": sorted({m["device"] for m in markers}),
        "torch_threads": sorted({m["torch_threads"] for m in markers}),
        "tasks": {"count": len(markers), "ranks": len({m["worker"] for m in markers})},
        "target_model": setup.get("target_model", {}),
        "clean": tallies.get(CLEAN, AttackTally()).summary(adversarial=False),
        "attacks": {
            name: t.summary(adversarial=True) for name, t in tallies.items() if name != CLEAN
        },
        "stages": {
            name: {
                "seconds": round(sec, 3),
                "records_per_s": round(stage_records(name) / sec, 1)
                if sec and stage_records(name)
                else None,
            }
            for name, sec in sorted(seconds.items())
        },
    }
