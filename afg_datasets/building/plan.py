"""The frozen build plan: shard tasks, their output paths and completion markers; resume.

A build is a list of tasks, each a contiguous range of source images with its own seed. A task
writes its shards under temporary names, renames them when complete and writes its marker
(`tasks/<id>.json`) last, so a task with a marker is done and any other task is simply re-run.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from afg_datasets import __version__
from afg_datasets.config import BuildConfig
from afg_datasets.errors import ConfigError, CorpusError, OutputDirError
from afg_datasets.files import PARTIAL, foreign_entry, partial_path
from afg_datasets.formats import OutputFormat
from afg_datasets.layout import (
    FORMAT_VERSION,
    LOCK_FILE,
    MANIFEST_FILE,
    OUTPUT_DIRS,
    OUTPUTS,
    PLAN_FILE,
    SPLITS,
    marker_path,
    read_json,
    write_json,
)
from afg_datasets.records import CLEAN


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the build seed and a task's identity (stable across machines)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Task:
    """Source images [start, stop) of the build, with a seed of their own."""

    id: int
    start: int
    stop: int
    seed: int


def make_tasks(cfg: BuildConfig, num_sources: int) -> list[Task]:
    size = cfg.sources_per_task
    return [
        Task(i, start, min(start + size, num_sources), derive_seed(cfg.seed, "task", i))
        for i, start in enumerate(range(0, num_sources, size))
    ]


def task_outputs(
    out: Path, task: Task, num_tasks: int, attacks: list[str], formats: Sequence[OutputFormat]
) -> list[Path]:
    """Every shard path a task may write (a split with no sources in the task writes none)."""
    paths = {
        fmt.shard_path(out, attack, split, task.id, num_tasks)
        for fmt in formats
        for attack in attacks
        for split in SPLITS
    }
    return sorted(paths)


def read_plan(out: Path) -> dict[str, Any]:
    path = out / PLAN_FILE
    if not path.is_file():
        raise OutputDirError(f"{out}: no {PLAN_FILE}; is this an AFG build directory?")
    plan = read_json(path, shape="plan")
    found = plan.get("format_version", "0 (afg-datasets 0.2)")
    # shards of two formats never meet in one corpus: a build resumes with the format it began
    # with (1.6 lays out webdataset shards otherwise than 1.5)
    if found != FORMAT_VERSION:
        raise OutputDirError(
            f"{path}: a build of corpus format {found}, this afg-datasets writes format "
            f"{FORMAT_VERSION}; finish it with the version that started it, or rebuild "
            "(--overwrite, or a new --out)"
        )
    return plan


def plan_tasks(plan: dict[str, Any]) -> list[Task]:
    return [Task(**t) for t in plan["tasks"]]


def read_marker(out: Path, task: Task) -> dict[str, Any] | None:
    """A task's marker if the task is complete: marker present and its files intact in size."""
    path = marker_path(out, task.id)
    if not path.is_file():
        return None
    try:
        marker = read_json(path, shape="marker")
    except CorpusError:
        return None  # a torn or foreign marker: the task runs again
    for entry in marker["files"]:
        file = out / entry["path"]
        if not file.is_file() or file.stat().st_size != entry["bytes"]:
            return None
    return marker


def covers(marker: dict[str, Any], attacks: Sequence[str]) -> bool:
    """Whether a task's marker holds every attack of the plan: a task `afg extend` has not
    reached yet lacks the added ones (a task with no records at all holds none, and needs none)."""
    tallies = marker["tallies"]
    return CLEAN not in tallies or all(attack in tallies for attack in attacks)


def clear_task(
    out: Path, task: Task, num_tasks: int, attacks: list[str], formats: Sequence[OutputFormat]
) -> None:
    """Remove what an interrupted run of `task` left behind (its temp files, its marker)."""
    marker_path(out, task.id).unlink(missing_ok=True)
    for path in task_outputs(out, task, num_tasks, attacks, formats):
        partial_path(path).unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Serialize plan/finalize steps of concurrent ranks on one output directory (a lock file
    that is a link is refused: taking the lock would truncate what it points to)."""
    out.mkdir(parents=True, exist_ok=True)
    foreign = foreign_entry(out, [], [LOCK_FILE])
    if foreign:
        raise OutputDirError(f"{foreign}; remove it (nothing was written)")
    with FileLock(out / LOCK_FILE):
        yield


FOREIGN = "foreign"


def corpus_hash(out: Path) -> str | None:
    """The config hash of the corpus (complete or in progress) in `out`, if any; FOREIGN when
    its manifest or plan is not recognizably one this package wrote (its shape, a config
    hash of 16 hex digits and a package version)."""
    for name, shape in ((MANIFEST_FILE, "manifest"), (PLAN_FILE, "plan")):
        path = out / name
        if path.is_symlink() or path.exists():
            try:
                data = read_json(path, shape=shape)
            except CorpusError:
                return FOREIGN
            ours = re.fullmatch(r"[0-9a-f]{16}", data["config_hash"]) and "package_version" in data
            return data["config_hash"] if ours else FOREIGN
    return None


def _format_of(out: Path) -> dict[str, Any]:
    """The plan (else manifest) in `out`, for its format version."""
    for name in (PLAN_FILE, MANIFEST_FILE):
        if (out / name).is_file():
            return read_json(out / name)
    return {"format_version": FORMAT_VERSION}


def _older_build_of(out: Path, cfg: BuildConfig, existing: str) -> bool:
    """Whether `out` holds this config's corpus as another format or hash rule made it."""
    stored = _format_of(out)
    if existing == cfg.config_hash():
        return stored.get("format_version") != FORMAT_VERSION
    try:
        return BuildConfig.from_manifest(stored["config"]).config_hash() == cfg.config_hash()
    except (ConfigError, KeyError, TypeError):
        return False


def enclosing_corpus(out: Path) -> Path | None:
    """The corpus (a folder with a manifest or plan this package wrote) that `out` would be
    inside, if any."""
    for folder in out.resolve().parents:
        if corpus_hash(folder) not in (None, FOREIGN):
            return folder
    return None


def check_output(out: Path, cfg: BuildConfig, overwrite: bool, resume: bool) -> bool:
    """Whether `out` must be cleared first. Refuses foreign directories and other corpora."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {str(out)!r} is a file, not a directory")
    holder = enclosing_corpus(out)
    if holder is not None:
        raise OutputDirError(
            f"--out {str(out)!r} is inside the corpus {str(holder)!r}; a corpus never holds "
            "another: choose a directory outside it"
        )
    contents = [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []
    existing = corpus_hash(out) if contents else None
    if contents and existing is None:
        raise OutputDirError(
            f"--out {str(out)!r} is not empty and holds no AFG corpus; "
            "choose a new or empty directory"
        )
    if existing == FOREIGN:
        raise OutputDirError(
            f"--out {str(out)!r} holds a manifest or plan that afg-datasets did not write; it is "
            "left untouched, even with --overwrite: choose another --out"
        )
    if resume and existing is None:
        raise OutputDirError(f"--resume: --out {str(out)!r} holds no build to resume")
    if existing is not None and _older_build_of(out, cfg, existing):
        stored = _format_of(out)
        if not overwrite:
            raise OutputDirError(
                f"--out {str(out)!r} holds this corpus as afg-datasets "
                f"{stored.get('package_version', '0.2')} built it (format "
                f"{stored.get('format_version', '0')}, config hash {existing}; now "
                f"{cfg.config_hash()}, format {FORMAT_VERSION}); pass --overwrite to rebuild it, "
                "or choose another --out"
            )
        return True
    if existing is not None and existing != cfg.config_hash():
        if not overwrite:
            raise OutputDirError(
                f"--out {str(out)!r} holds a different corpus (config hash {existing}, this build "
                f"{cfg.config_hash()}); pass --overwrite to replace it, or choose another --out"
            )
        return True
    return False


def prepare_output(
    out: Path, cfg: BuildConfig, plan: dict[str, Any], overwrite: bool, resume: bool
) -> bool:
    """Write the plan first (or find the same one to resume). Returns True when resuming."""
    if check_output(out, cfg, overwrite, resume):
        for name in OUTPUTS:
            path = out / name
            if path.is_dir() and not path.is_symlink():  # a link goes, not what it points to
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    for leftover in out.glob(f"*{PARTIAL}"):
        leftover.unlink()
    folders = [name for name in OUTPUTS if name in OUTPUT_DIRS]
    foreign = foreign_entry(out, folders, [name for name in OUTPUTS if name not in OUTPUT_DIRS])
    if foreign:
        raise OutputDirError(
            f"{foreign}; a build writes only through what it created: remove it (nothing "
            "was written)"
        )
    if (out / PLAN_FILE).is_file():
        planned = read_plan(out)
        if planned["tasks"] != plan["tasks"]:
            raise OutputDirError(
                f"{out / PLAN_FILE} plans different tasks for the same config: the source data "
                "changed since this build started; build into a new --out"
            )
        if planned.get("parent") != plan.get("parent"):
            raise OutputDirError(
                f"{out / PLAN_FILE} re-encodes another corpus (parent {planned.get('parent')}; "
                f"now {plan.get('parent')}); pass --overwrite, or choose another --out"
            )
        return True
    write_json(out / PLAN_FILE, plan)
    return False


def plan_document(cfg: BuildConfig, tasks: list[Task], corpus: dict[str, Any]) -> dict[str, Any]:
    """plan.json: config, hash, tasks and the corpus facts `finalize` needs (no timings)."""
    return {
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "tasks": [asdict(t) for t in tasks],
        **corpus,
    }
