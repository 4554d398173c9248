"""The build of a corpus: plan (plan.json first), run this rank's tasks with an executor,
finalize when every task is complete (manifest.json last)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from afg_datasets.building.context import BuildContext, WorkerSpec, prepare, save_encoder_state
from afg_datasets.building.executors import EXECUTORS
from afg_datasets.building.finalize import BuildResult, finalize, finished_build, task_markers
from afg_datasets.building.options import RunOptions
from afg_datasets.building.plan import (
    check_output,
    make_tasks,
    output_lock,
    plan_document,
    prepare_output,
)
from afg_datasets.building.threads import numeric_threads, registered
from afg_datasets.config import BuildConfig
from afg_datasets.layout import INFO_FILE, MODEL_DIR, SETUP_FILE, write_json
from afg_datasets.models import save_model


def build_corpus(
    cfg: BuildConfig, out: str | os.PathLike, options: RunOptions | None = None, **changes: Any
) -> BuildResult:
    """Build (or resume) the corpus `cfg` describes in `out`: plan, this rank's tasks, and
    finalize when every task is complete (manifest.json last). `changes` set RunOptions fields."""
    opts = replace(options or RunOptions(), **changes).resolve()
    # Other builds on this node leave us our share of cores; every computation runs on one
    # thread (threads.NUMERIC_THREADS), so the bytes do not depend on the layout.
    with registered(opts.workers), numeric_threads():
        return _build(cfg, Path(out), opts)


def _build(cfg: BuildConfig, out: Path, opts: RunOptions) -> BuildResult:
    start = time.perf_counter()
    done = None if opts.overwrite else finished_build(out, cfg)
    if done is not None:  # checked, nothing written: the stored figures are the build's
        return done
    ctx = prepare(cfg, out, opts.device, opts.progress)  # validates all before anything is written
    # Checked before the lock (not even the lock file goes into a foreign directory) and again
    # under it, by prepare_output (another rank may have planned meanwhile).
    check_output(out, cfg, opts.overwrite, opts.resume)
    tasks = make_tasks(cfg, len(ctx.source))
    plan = plan_document(cfg, tasks, ctx.corpus_facts())
    with output_lock(out):
        resumed = prepare_output(out, cfg, plan, opts.overwrite, opts.resume)
        ctx = _save_or_adopt_model(ctx, out)
    spec = WorkerSpec(cfg, out, opts.device, len(tasks))
    mine = tasks[opts.rank :: opts.world_size]
    ran = EXECUTORS[opts.executor](spec, mine, opts.executor_options(), ctx)
    with output_lock(out):
        if task_markers(out, plan)[1]:  # other ranks still have tasks to finish
            return BuildResult(out, {}, {}, ran)
        single = opts.world_size == 1 and not resumed
        result = finalize(out, time.perf_counter() - start if single else None)
    result.tasks_run = ran
    return result


def _save_or_adopt_model(ctx: BuildContext, out: Path) -> BuildContext:
    """The first process to plan saves its model (and setup timings); every later rank or
    resumed run adopts the saved one, so all tasks use the same weights."""
    model_dir = out / MODEL_DIR
    if (model_dir / INFO_FILE).is_file():
        ctx = ctx.with_saved_model(model_dir)
    else:
        save_model(ctx.model, ctx.model_info, model_dir)
    save_encoder_state(ctx, model_dir)
    if not (out / SETUP_FILE).is_file():
        (out / SETUP_FILE).parent.mkdir(exist_ok=True)
        write_json(out / SETUP_FILE, ctx.setup_record())
    return ctx
