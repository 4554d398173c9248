"""One task of a build: its sources -> clean + attacked variants -> uint8 -> genome -> records
-> shards under temporary names -> renamed -> the task's marker, written last."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from afg_datasets.attacks import Attack
from afg_datasets.building.context import BuildContext
from afg_datasets.building.plan import Task, clear_task, derive_seed, read_marker
from afg_datasets.building.stats import AttackTally, StageTimer, peak_rss_mb
from afg_datasets.errors import ModelError
from afg_datasets.formats import ShardFile, ShardWriter
from afg_datasets.layout import (
    SPLITS,
    file_entry,
    marker_path,
    task_lock_path,
    write_json,
)
from afg_datasets.models import forward_with_taps, model_input, scaled
from afg_datasets.records import CLEAN, RecordBatch
from afg_datasets.sources.base import Decoded
from afg_datasets.sources.loading import decode_batches


def quantize(adv: torch.Tensor, clean: torch.Tensor, linf: float | None) -> torch.Tensor:
    """[0,1] float -> uint8, exactly what a PNG stores. For Linf attacks, rounding is kept
    inside the budget: at most floor(eps * 255) levels away from the clean pixel."""
    stored = adv.mul(255).round()
    if linf is not None:
        levels = np.floor(linf * 255 + 1e-6)
        base = clean.mul(255).round()
        stored = torch.minimum(torch.maximum(stored, base - levels), base + levels)
    return stored.clamp(0, 255).to(torch.uint8)


log = logging.getLogger(__name__)


class TaskRun:
    """One run of one task: streams its batches into shards, timing stages and tallying."""

    def __init__(self, ctx: BuildContext, task: Task, num_tasks: int):
        self.ctx = ctx
        self.task = task
        self.num_tasks = num_tasks
        self.timer = StageTimer()
        self.tallies: dict[str, AttackTally] = defaultdict(AttackTally)
        self.shards = TaskShards(ctx, task.id, num_tasks)

    def run(self) -> dict[str, Any]:
        """Write the task's shards (temp names, renamed at the end); returns its marker."""
        started = time.time()
        p, task = self.ctx, self.task
        skipped: dict[str, list[str]] = defaultdict(list)
        batches = self.batches()
        chunks = [chunk for _, _, chunk in batches]
        bar = self.progress_bar(len(batches))
        with self.shards, bar:  # an exception aborts every shard writer (no final names)
            decoded_batches = decode_batches(p.source.reader, chunks, p.loader_workers)
            for (split, b, _), decoded in zip(batches, self.timed(decoded_batches), strict=True):
                skipped[split] += p.source.check(decoded)
                bar.set_postfix_str(f"{split} batch {b}")
                if len(decoded.kept):
                    for batch in self.variants(split, b, decoded):
                        with self.timer("write"):
                            self.shards.write(batch, split)
                        bar.update()
            with self.timer("write"):
                shards = self.shards.close()
        return task_marker(p, task.id, started, self.timer, self.tallies, shards, skipped)

    def progress_bar(self, batches: int) -> tqdm:
        """Within the task: one step per variant (clean, each attack) of each batch."""
        steps = batches * (1 + len(self.ctx.attacks))
        desc = f"task {self.task.id}"
        return tqdm(total=steps, desc=desc, unit="step", leave=False, disable=not self.ctx.progress)

    def batches(self) -> list[tuple[str, int, np.ndarray]]:
        """(split, batch index, source indices) of this task, split by split."""
        p, task = self.ctx, self.task
        sources = np.arange(task.start, task.stop)
        batches = []
        for split in SPLITS:
            chosen = sources[p.split_of[sources] == split]
            for b, start in enumerate(range(0, len(chosen), p.cfg.batch_size)):
                batches.append((split, b, chosen[start : start + p.cfg.batch_size]))
        return batches

    def timed(self, decoded: Iterator[Decoded]) -> Iterator[Decoded]:
        """`decoded`, with the time spent waiting for each batch counted as stage `decode`."""
        while True:
            with self.timer("decode"):
                item = next(decoded, None)
            if item is None:
                return
            yield item

    def variants(self, split: str, batch_index: int, decoded: Decoded) -> Iterator[RecordBatch]:
        """The clean records of a batch of decoded sources, then each attack's records."""
        p, seed = self.ctx, self.task.seed
        images, indices = decoded.images, decoded.kept
        labels = p.source.labels[indices]
        ids = [p.source.ids[i] for i in indices]
        x = model_input(images, p.device)
        y = torch.from_numpy(labels).to(p.device)
        zeros = np.zeros(len(indices), dtype=np.float32)
        genome_seed = derive_seed(seed, "genome", split, batch_index)
        clean = self.encode(ids, CLEAN, "{}", x, images, labels, zeros, zeros, genome_seed)
        self.tallies[CLEAN].add(clean, np.ones(len(labels), dtype=bool))
        eligible = clean.preds == labels  # attacks count only where the model was right
        yield clean
        for attack in p.attacks:
            what = f"{attack.name} records of task {self.task.id}"
            where = (split, batch_index)
            batch = attacked_records(p, attack, self.timer, x, y, ids, labels, what, seed, where)
            self.tallies[attack.name].add(batch, eligible)
            yield batch

    def encode(self, ids, attack, params, x, images, labels, linf, l2, seed) -> RecordBatch:
        """Re-predict the stored images with taps and encode their genomes."""
        what = f"{attack} records of task {self.task.id}"
        preds, genome = predict_and_encode(self.ctx, x, seed, self.timer, what)
        return RecordBatch(ids, attack, params, images, labels, preds, linf, l2, genome)


def attacked_records(
    ctx: BuildContext,
    attack: Attack,
    timer: StageTimer,
    x: torch.Tensor,
    y: torch.Tensor,
    ids: list[str],
    labels: np.ndarray,
    what: str,
    task_seed: int,
    where: tuple[str, int],
) -> RecordBatch:
    """One attack's records of one batch (`where`: its split and index in the task): attacked
    from the batch's own seed, rounded to the stored 8 bits, re-predicted and encoded. A
    build and `afg extend` make them here, so an added attack gives a fresh build's bytes."""
    split, batch_index = where
    with timer(f"attack/{attack.name}"):
        adv = attack.run(x, y, derive_seed(task_seed, attack.name, split, batch_index))
        stored = quantize(adv, x, attack.linf_budget())
        adv_x = scaled(stored)
        delta = (adv_x - x).flatten(1)
        linf, l2 = delta.abs().amax(1).cpu().numpy(), delta.norm(dim=1).cpu().numpy()
    preds, genome = predict_and_encode(
        ctx, adv_x, derive_seed(task_seed, "genome", split, batch_index), timer, what
    )
    images = stored.permute(0, 2, 3, 1).cpu().numpy()
    return RecordBatch(
        ids, attack.name, attack.params_json, images, labels, preds, linf, l2, genome
    )


def task_marker(
    ctx: BuildContext,
    task_id: int,
    started: float,
    timer: StageTimer,
    tallies: Mapping[str, AttackTally],
    shards: list[ShardFile],
    skipped: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A finished task's marker: its files (hashed here), tallies and stage seconds."""
    with timer("hash"):
        files = [file_entry(ctx.out, shard.path, shard.rows) for shard in shards]
    return {
        "task": task_id,
        "worker": os.getpid(),
        "device": str(ctx.device),
        "torch_threads": torch.get_num_threads(),
        "started": started,
        "finished": time.time(),
        "peak_rss_mb": peak_rss_mb(),
        "tallies": {name: vars(t).copy() for name, t in tallies.items()},
        "stages": {k: round(v, 4) for k, v in timer.seconds.items()},
        "files": files,
        **({"skipped": dict(skipped)} if skipped is not None else {}),
    }


def predict_and_encode(
    ctx: BuildContext, x: torch.Tensor, seed: int, timer: StageTimer, what: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The target model's predictions on images `x` ([0,1], as stored) and their genomes;
    non-finite genomes (`what` records) are a ModelError."""
    with timer("predict"):
        preds, acts = forward_with_taps(ctx.model, ctx.layers, x)
    with timer("encode"):
        genome = ctx.encoder.encode(acts, seed)
    broken = [name for name, array in genome.items() if not np.isfinite(array).all()]
    if broken:
        raise ModelError(
            f"the target model gave non-finite activations ({what}: {broken}); its weights or "
            "the source pixels are unusable"
        )
    return preds.cpu().numpy(), genome


class TaskShards:
    """The shards one task writes: a writer per format and shard, opened on first use. As a
    context manager, an exception aborts every writer (nothing gets a final name)."""

    def __init__(self, ctx: BuildContext, task_id: int, num_tasks: int):
        self.ctx, self.task_id, self.num_tasks = ctx, task_id, num_tasks
        self.writers: dict[Path, ShardWriter] = {}
        self._stack = ExitStack()

    def __enter__(self) -> TaskShards:
        self._stack.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def write(self, batch: RecordBatch, split: str) -> None:
        """Append a batch to its shard in every output format."""
        for fmt in self.ctx.formats:
            path = fmt.shard_path(self.ctx.out, batch.attack, split, self.task_id, self.num_tasks)
            if path not in self.writers:
                writer = fmt.writer(path, self.ctx.features)
                self.writers[path] = self._stack.enter_context(writer)
            self.writers[path].write(batch)

    def close(self) -> list[ShardFile]:
        """Give every shard its final name."""
        return [writer.close() for writer in self.writers.values()]


def complete_task(ctx: BuildContext, task: Task, num_tasks: int) -> bool:
    """Run `task` unless its marker says it is done or another process is running it; the
    marker is written last. Returns whether it ran."""

    def run() -> dict[str, Any]:
        clear_task(ctx.out, task, num_tasks, ctx.variant_names, ctx.formats)
        return TaskRun(ctx, task, num_tasks).run()

    return run_once(ctx.out, task, run)


def run_once(out: Path, task: Task, run: Callable[[], dict[str, Any]]) -> bool:
    """`run` (which clears the task's leftovers and returns its marker) under the task's lock,
    unless the task has a marker; the marker is written last. Returns whether it ran."""
    marker_path(out, task.id).parent.mkdir(exist_ok=True)
    lock = FileLock(task_lock_path(out, task.id))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("task %d is being run by another process; skipping it", task.id)
        return False
    try:
        if read_marker(out, task) is not None:
            return False
        write_json(marker_path(out, task.id), run())
        return True
    finally:
        lock.release()
