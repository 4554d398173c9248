"""`afg finalize`: manifest, stats and card from the plan and every task's marker.

Runs at the end of a single-process build, and by hand (or by the last rank) after a build
split across processes, GPUs or nodes. Idempotent: finalizing twice writes the same manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afg_datasets.building.plan import check_output, covers, plan_tasks, read_marker, read_plan
from afg_datasets.building.stats import make_stats, skipped_sources, weak_attacks
from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import CorpusError, OutputDirError
from afg_datasets.layout import (
    ATLAS_FILE,
    ENCODER_STATE_FILE,
    FORMAT_VERSION,
    INFO_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    MODEL_FILE,
    SETUP_FILE,
    STATS_FILE,
    file_entry,
    read_json,
    write_json,
)
from afg_datasets.publish.card import write_card
from afg_datasets.publish.croissant import write_croissant

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]
    stats: dict[str, Any]
    tasks_run: list[int] = field(default_factory=list)


def finished_build(out: Path, cfg: BuildConfig) -> BuildResult | None:
    """The corpus in `out` if it is this config's build, complete in this format (every task
    marker in place) and intact (verified: every file's sha256); None when there is none to
    reuse. Reads, never writes:
    re-running a finished build costs its verification. A complete build of this config
    that fails verification is a CorpusError (--overwrite rebuilds it)."""
    check_output(out, cfg, overwrite=False, resume=False)  # other corpora: refused as before
    if not (out / MANIFEST_FILE).is_file():
        return None
    corpus = Corpus.open(out)
    manifest = corpus.manifest
    if manifest["config_hash"] != cfg.config_hash() or (
        manifest.get("format_version") != FORMAT_VERSION
    ):
        return None
    try:  # the build state too: a torn or missing task marker means that task runs again
        if task_markers(out, read_plan(out))[1]:
            return None
    except (CorpusError, OutputDirError):
        return None  # the build's own path says what is wrong with its state
    try:
        corpus.verify()
    except CorpusError as err:
        raise CorpusError(f"{err}; `afg build-shards ... --overwrite` rebuilds it") from None
    return BuildResult(out, manifest, read_json(out / STATS_FILE, shape="stats"))


def task_markers(out: Path, plan: dict[str, Any]) -> tuple[list[dict], list[int]]:
    """(markers of complete tasks, ids of incomplete tasks), in task order."""
    markers, missing = [], []
    for task in plan_tasks(plan):
        marker = read_marker(out, task)
        if marker is None or not covers(marker, list(plan["attacks"])):
            missing.append(task.id)
        else:
            markers.append(marker)
    return markers, missing


def finalize(out: str | Path, wall: float | None = None) -> BuildResult:
    """Write stats.json, the card and manifest.json (last) once every task is complete."""
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
    setup_path = out / SETUP_FILE
    setup = read_json(setup_path) if setup_path.is_file() else {"stages": {}}
    stats = make_stats(setup, markers, wall)
    for warning in weak_attacks(stats):
        log.warning("%s", warning)
    write_json(out / STATS_FILE, stats)
    corpus = Corpus(out, manifest)  # read before its manifest is written: the card lists it
    write_card(corpus, stats)
    write_croissant(corpus)
    write_json(out / MANIFEST_FILE, manifest)
    return BuildResult(out, manifest, stats)


def make_manifest(out: Path, plan: dict[str, Any], markers: list[dict]) -> dict[str, Any]:
    data_files = sorted((f for m in markers for f in m["files"]), key=lambda e: e["path"])
    model_dir = out / MODEL_DIR
    names = sorted(
        n
        for n in (ATLAS_FILE, ENCODER_STATE_FILE, INFO_FILE, MODEL_FILE)
        if (model_dir / n).is_file()
    )
    model_files = [file_entry(out, model_dir / name, None) for name in names]
    weights_path = f"{MODEL_DIR}/{MODEL_FILE}"
    weights = next(e for e in model_files if e["path"] == weights_path)
    skipped = skipped_sources(markers)
    variants = 1 + len(plan["attacks"])
    splits = {}
    for name, counts in plan["splits"].items():
        sources = counts["sources"] - len(skipped.get(name, []))
        splits[name] = {"sources": sources, "records": sources * variants}
    return {
        "format_version": FORMAT_VERSION,
        "name": plan["config"]["name"],
        "config": plan["config"],
        "config_hash": plan["config_hash"],
        "package_version": plan["package_version"],
        "seeds": plan["seeds"],
        "source": {**plan["source"], "skipped": _skipped(plan, skipped)},
        "model": {
            "sha256": weights["sha256"],
            "path": weights_path,
            **read_json(model_dir / INFO_FILE),
        },
        "layers": plan["layers"],
        "attacks": plan["attacks"],
        "features": plan["features"],
        "splits": splits,
        "tasks": len(plan["tasks"]),
        "files": data_files + model_files,
        **({"parent": plan["parent"]} if "parent" in plan else {}),
    }


def _skipped(plan: dict[str, Any], skipped: dict[str, list[str]]) -> int:
    """Sources left out: by this build's tasks, plus, for a re-encoded corpus, its parent's."""
    return plan["source"].get("skipped", 0) + sum(map(len, skipped.values()))
