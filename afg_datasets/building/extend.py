"""`afg extend`: attacks added to a built corpus in place. Only the new attacks' shards are
computed, from the corpus's own stored clean images (the decoded source pixels, bit for bit),
batch by batch as the build made them (its parquet row groups), with the seeds a build derives
from the attack's name: the result is byte-identical to a fresh build with all the attacks,
and no stored file is rewritten (format 1.6 keeps each variant in shards of its own). The plan
is rewritten first; each task's new shards and then its merged marker are written whole, so a
killed extend is resumed by the same command; the manifest, stats, card, croissant and
examples are written last, by `finalize`, as a build writes them."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from afg_datasets import __version__
from afg_datasets.attacks import ATTACKS
from afg_datasets.building.context import BuildContext, ready_encoder
from afg_datasets.building.encode import corpus_context, stored_batches, stored_shape, task_shards
from afg_datasets.building.finalize import BuildResult, finalize
from afg_datasets.building.options import check_device, default_workers
from afg_datasets.building.plan import (
    Task,
    covers,
    output_lock,
    plan_tasks,
    read_marker,
    read_plan,
    task_outputs,
)
from afg_datasets.building.stats import AttackTally, StageTimer, task_runs
from afg_datasets.building.task import TaskShards, attacked_records, task_marker
from afg_datasets.building.threads import numeric_threads, pin_numeric_threads, registered
from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import ConfigError, OutputDirError
from afg_datasets.files import atomic_directory, partial_path
from afg_datasets.formats import FORMATS
from afg_datasets.layout import (
    EXAMPLES_PNG,
    FORMAT_VERSION,
    MODEL_DIR,
    PLAN_FILE,
    SPLITS,
    marker_path,
    task_lock_path,
    write_json,
)
from afg_datasets.models import model_input
from afg_datasets.records import CLEAN


def extend_corpus(
    corpus: str | Path,
    attacks: Sequence[str],
    out: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    workers: int | None = None,
) -> BuildResult:
    """Add `attacks` (registry names, at their defaults) to the built corpus folder `corpus`
    (or to `out`, a new folder whose files are links to the corpus's), in `workers` task
    processes of one thread each (default: as a build, one per core it may use); resumes an
    extend of the same attacks that was cut off."""
    root = Path(corpus)
    if out is not None and not (Path(out) / PLAN_FILE).is_file():  # else: resume it there
        _extended_config(Corpus.open(root), list(attacks))  # bad input: nothing made
        _check_out(root, Path(out))
        atomic_directory(Path(out), lambda tmp: shutil.copytree(root, tmp, **_LINKED))
    workers = workers or default_workers(device)
    with numeric_threads():
        return _extend(Path(out or root), list(attacks), device, progress, workers)


def _check_out(root: Path, out: Path) -> None:
    """`--out` must be a new folder outside the corpus (one holding a cut-off extend of it
    resumes instead); anything else is one OutputDirError."""
    inside = out.resolve().is_relative_to(root.resolve())
    if inside or root.resolve().is_relative_to(out.resolve()) or out.exists():
        where = "inside the corpus" if inside else "a folder that exists (or holds the corpus)"
        raise OutputDirError(f"--out {str(out)!r} is {where}; name a new folder beside it")


def _link(source: str, target: str) -> None:
    """A hard link where the file system allows one (a corpus never rewrites a file in place:
    every write is a new file renamed over), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# the corpus's files linked into --out; a lock (flock is per inode: a linked lock would be the
# corpus's own) or a half-written file is not carried over
_LINKED = {"copy_function": _link, "ignore": shutil.ignore_patterns("*.lock", "*.partial")}


def _extend(
    root: Path, attacks: list[str], device: str, progress: bool, workers: int
) -> BuildResult:
    check_device(device)
    corpus = Corpus.open(root)
    cfg = _extended_config(corpus, attacks)
    plan = _build_state(root, corpus, cfg)
    # every stored byte as the manifest says, before any is added
    corpus.verify(expected=_leftovers(root, plan, cfg, attacks))
    job = _Job.of(root, corpus, cfg, attacks, device, progress)
    plan = _extended_plan(plan, job.ctx)
    with output_lock(root):
        write_json(root / PLAN_FILE, plan)  # first: a cut-off extend resumes from it
    tasks = plan_tasks(plan)
    if min(workers, len(tasks)) > 1:
        _run_pool(root, attacks, device, tasks, workers, progress)
    else:
        for task in tqdm(tasks, desc="tasks", unit="task", disable=not progress):
            job.run(task, len(tasks))
    (root / EXAMPLES_PNG).unlink(missing_ok=True)  # drawn again, with a row per attack
    with output_lock(root):
        return finalize(root)


@dataclass
class _Job:
    """What extending a task needs: the corpus's context with the extended config (its model,
    encoder state and attacks), the added attacks, and each task's stored shards."""

    ctx: BuildContext
    new: list
    shards: dict

    @classmethod
    def of(
        cls,
        root: Path,
        corpus: Corpus,
        cfg: BuildConfig,
        attacks: list[str],
        device: str,
        progress: bool,
    ):
        ctx = corpus_context(root, corpus.manifest, cfg, root, device, progress)
        ready_encoder(ctx, [], root / MODEL_DIR)  # a fitted basis: the corpus's own
        new = [attack for attack in ctx.attacks if attack.name in attacks]
        return cls(ctx, new, task_shards(corpus))

    def run(self, task: Task, num_tasks: int) -> None:
        _extend_task(self.ctx, task, self.new, self.shards.get(task.id, {}), num_tasks)


def _run_pool(
    root: Path, attacks: list[str], device: str, tasks: list[Task], workers: int, progress: bool
) -> None:
    """Tasks in `workers` spawned processes of one thread each, as a build runs them (the
    bytes never depend on the count)."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads
    with (
        registered(workers),
        ProcessPoolExecutor(
            min(workers, len(tasks)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(root, attacks, device),
        ) as pool,
    ):
        futures = [pool.submit(_run_in_worker, task, len(tasks)) for task in tasks]
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress):
            future.result()


_worker: _Job | None = None  # one per pool process, made once


def _init_worker(root: Path, attacks: list[str], device: str) -> None:
    global _worker
    pin_numeric_threads()
    corpus = Corpus.open(root)
    _worker = _Job.of(root, corpus, _extended_config(corpus, attacks), attacks, device, False)


def _run_in_worker(task: Task, num_tasks: int) -> None:
    _worker.run(task, num_tasks)


def _extended_config(corpus: Corpus, attacks: list[str]) -> BuildConfig:
    """The corpus's config with `attacks` appended (a fresh build of it is what extend makes);
    a ConfigError naming the bad name, a repeat, or an attack the corpus has."""
    if not attacks:
        raise ConfigError(f"--attacks names no attack; valid attacks: {', '.join(ATTACKS)}")
    for name in attacks:
        ATTACKS[name]  # an unknown name: one line listing both backends' names
    held = [name for name in attacks if name in corpus.attacks]
    if held or len(set(attacks)) != len(attacks):
        what = f"{held} already in the corpus" if held else f"{attacks} repeats a name"
        raise ConfigError(
            f"--attacks {','.join(attacks)}: {what} (it has {', '.join(corpus.attacks)})"
        )
    if corpus.manifest["format_version"] != FORMAT_VERSION:
        raise OutputDirError(
            f"{corpus.root}: a corpus of format {corpus.manifest['format_version']}; extend "
            f"adds shards to format {FORMAT_VERSION} corpora only (1.5 and earlier keep every "
            "attack's webdataset records in one tar per split): rebuild it with this version "
            "(the same config and seed give the same records), then extend"
        )
    cfg = BuildConfig.from_manifest(corpus.config)
    return cfg.replace(attacks={**cfg.attacks, **{name: {} for name in attacks}})


def _leftovers(root: Path, plan: dict, cfg: BuildConfig, attacks: list[str]) -> set[str]:
    """The verify problems a cut-off extend of `attacks` leaves: its shards, not yet listed."""
    formats = [FORMATS[name] for name in cfg.formats]
    return {
        f"{path.relative_to(root).as_posix()}: not in the manifest"
        for task in plan_tasks(plan)
        for path in task_outputs(root, task, len(plan["tasks"]), attacks, formats)
    }


def _build_state(root: Path, corpus: Corpus, cfg: BuildConfig) -> dict[str, Any]:
    """The folder's plan; a folder without its build state (a Hub copy), or cut off in
    another extend, is refused in one line."""
    if not (root / PLAN_FILE).is_file():
        raise OutputDirError(
            f"{root}: no {PLAN_FILE} or task markers (a copy from the Hub holds the corpus, not "
            "its build state); extend the folder it was built in"
        )
    plan = read_plan(root)
    if plan["config_hash"] not in (corpus.manifest["config_hash"], cfg.config_hash()):
        raise OutputDirError(
            f"{root}: {PLAN_FILE} is another extend's, cut off (attacks "
            f"{', '.join(plan['attacks'])}); finish it with `afg extend {root} --attacks "
            f"{','.join(a for a in plan['attacks'] if a not in corpus.attacks)}` first"
        )
    return plan


def _extended_plan(plan: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    """The build's plan with the extended config: its tasks and source facts unchanged, the
    attacks and record counts as a fresh build of that config records them."""
    cfg = ctx.cfg
    variants = 1 + len(cfg.attacks)
    splits = {
        name: {"sources": counts["sources"], "records": counts["sources"] * variants}
        for name, counts in plan["splits"].items()
    }
    return {
        **plan,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "package_version": __version__,
        "attacks": {attack.name: attack.params for attack in ctx.attacks},
        "splits": splits,
    }


def _extend_task(
    ctx: BuildContext, task: Task, new: list, shards: dict[str, dict[str, Path]], num_tasks: int
) -> None:
    """The new attacks' shards of one task, then its marker with theirs merged in (skipped when
    another process holds the task, or its marker has them already)."""
    lock = FileLock(task_lock_path(ctx.out, task.id))
    with contextlib.suppress(Timeout), lock.acquire(timeout=0):
        marker = read_marker(ctx.out, task)
        if marker is None:
            raise OutputDirError(
                f"{ctx.out}: task {task.id} has no complete marker; finish the build first"
            )
        if covers(marker, [attack.name for attack in ctx.attacks]):
            return
        for path in task_outputs(ctx.out, task, num_tasks, [a.name for a in new], ctx.formats):
            partial_path(path).unlink(missing_ok=True)  # a cut-off run's leftovers
        added = _run_new_attacks(ctx, task, new, shards, num_tasks)
        write_json(marker_path(ctx.out, task.id), _merged(marker, added))


def _run_new_attacks(
    ctx: BuildContext, task: Task, new: list, shards: dict[str, dict[str, Path]], num_tasks: int
) -> dict[str, Any]:
    """Attack each batch of the task's stored clean images as the build did; their marker."""
    started, timer = time.time(), StageTimer()
    tallies: dict[str, AttackTally] = defaultdict(AttackTally)
    with TaskShards(ctx, task.id, num_tasks) as out:
        for split in SPLITS:
            clean = {CLEAN: shards[split][CLEAN]} if CLEAN in shards.get(split, {}) else {}
            for b, (batch,) in enumerate(stored_batches(clean, timer, stored_shape(ctx))):
                x = model_input(batch.images, ctx.device)
                y = torch.as_tensor(batch.labels.copy(), device=ctx.device)
                eligible = batch.preds == batch.labels  # as the build counts
                for attack in new:
                    what = f"{attack.name} records of task {task.id}"
                    records = attacked_records(
                        ctx, attack, timer, x, y, batch.source_ids, batch.labels, what, task.seed,
                        (split, b),
                    )  # fmt: skip
                    tallies[attack.name].add(records, eligible)
                    with timer("write"):
                        out.write(records, split)
        with timer("write"):
            closed = out.close()
    return task_marker(ctx, task.id, started, timer, tallies, closed)


def _merged(marker: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """A task's marker with an extend's files, tallies and stage seconds added."""
    stages = dict(marker["stages"])
    for stage, seconds in added["stages"].items():
        stages[stage] = round(stages.get(stage, 0.0) + seconds, 4)
    return {
        **marker,
        "finished": added["finished"],
        "runs": [*task_runs(marker), (added["started"], added["finished"])],
        "peak_rss_mb": max(marker["peak_rss_mb"], added["peak_rss_mb"]),
        "tallies": {**marker["tallies"], **added["tallies"]},
        "stages": stages,
        "files": sorted([*marker["files"], *added["files"]], key=lambda entry: entry["path"]),
    }
