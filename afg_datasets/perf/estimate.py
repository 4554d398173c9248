"""`afg estimate`: plan a build before paying for it.

A short calibration on this device with the build's real model, attacks and encoder: one task of
`calibration` source images (from the real source, or random pixels of the right shape when the
source is not at hand) runs in a temporary directory through the same `TaskRun` a build uses, so
every stage is timed exactly as in a build. Its per-source seconds, the setup cost and the shard
bytes are projected onto N sources spread over K devices the way `build-shards` spreads tasks over
ranks. The model's own forward+backward throughput at the build's batch size is the floor each
stage is judged against.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.building.context import bind, ready_encoder
from afg_datasets.building.options import default_workers
from afg_datasets.building.plan import Task, derive_seed, make_tasks
from afg_datasets.building.task import TaskRun
from afg_datasets.building.threads import numeric_threads
from afg_datasets.config import BuildConfig
from afg_datasets.errors import SourceError
from afg_datasets.formats import format_of
from afg_datasets.models import TargetModel
from afg_datasets.perf.stand_ins import (
    calibration_model,
    synthetic_source,
    training_seconds,
)
from afg_datasets.sources import load_source
from afg_datasets.sources.base import Source

FLOOR_RUNS, FLOOR_TOLERANCE, FLOOR_MOST = 5, 0.05, 30  # the floor: 5 runs within 5 %, <= 30


def throughput_floor(
    model: TargetModel, shape: tuple[int, ...], device: torch.device
) -> tuple[float, float]:
    """Images/s of the model's forward+backward (w.r.t. the input, as attacks do) at the
    attack's batch shape, warm: after a warm-up, timed until the last FLOOR_RUNS runs agree
    within FLOOR_TOLERANCE of their median (or FLOOR_MOST runs); returns their median rate and
    their spread, (slowest - fastest) / median."""
    x = torch.rand(*shape, device=device, requires_grad=True)

    def timed() -> float:
        start = time.perf_counter()
        model(x).logsumexp(1).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up: allocations, cuDNN's choice of algorithms
    runs: list[float] = []
    while True:
        runs.append(timed())
        last = runs[-FLOOR_RUNS:]
        middle = float(np.median(last))
        spread = (max(last) - min(last)) / middle
        if len(last) == FLOOR_RUNS and (spread <= FLOOR_TOLERANCE or len(runs) >= FLOOR_MOST):
            return shape[0] / middle, round(spread, 4)


def _source_for(cfg: BuildConfig, count: int) -> tuple[Source, bool]:
    try:
        return load_source(cfg.source), True
    except SourceError:
        if cfg.source.root:
            raise
        return synthetic_source(cfg, count), False


def _makespan(tasks: list[Task], devices: int, workers: int, per_source: float) -> float:
    """Seconds until the last of `devices` ranks finishes its `tasks` (dealt round-robin), each
    rank's tasks taken in order by `workers` task processes as they free up (the pool)."""
    ends = []
    for rank in range(devices):
        free = [0.0] * min(workers, max(len(tasks[rank::devices]), 1))
        for task in tasks[rank::devices]:
            first = free.index(min(free))
            free[first] += (task.stop - task.start) * per_source
        ends.append(max(free))
    return max(ends)


@dataclass(frozen=True)
class Calibration:
    """One task of `sources` images run through the build's own `TaskRun` on a device."""

    sources: int  # source images calibrated
    real: bool  # from the configured source (else random pixels)
    source_images: int  # images in the source
    setup_seconds: float
    floor: float  # the model's forward+backward images/s at the build's batch size
    floor_spread: float  # (slowest - fastest) / median of the runs the floor is the median of
    marker: dict[str, Any]  # the task's marker: stage seconds, tallies, files
    device: torch.device
    peak_device_mb: float | None  # CUDA only
    untrained: bool  # a trainable net that a build would still train
    shard_bytes: dict[str, dict[str, int]]  # format -> column group -> bytes (`shard_bytes`)

    def per_source(self) -> dict[str, float]:
        """Seconds per source image of each stage."""
        return {k: v / self.sources for k, v in self.marker["stages"].items()}

    def bytes_per_record(self) -> float:
        records = sum(t["records"] for t in self.marker["tallies"].values())
        return sum(f["bytes"] for f in self.marker["files"]) / max(records, 1)


def calibrate(
    cfg: BuildConfig,
    device: str,
    calibration: int | None = None,
    started: float | None = None,
    channels_last: bool = True,
) -> Calibration:
    """Run one task of `calibration` source images (default: one batch) in a temporary
    directory, exactly as a build runs it."""
    started = started or time.perf_counter()
    count = min(calibration or cfg.batch_size, cfg.sources_per_task)
    with numeric_threads(), tempfile.TemporaryDirectory(prefix="afg-estimate-") as tmp:
        source, real = _source_for(cfg, count)
        model, info, untrained = calibration_model(cfg, source, device)
        ctx = bind(
            cfg,
            Path(tmp),
            torch.device(device),
            source.head(count),
            model,
            info,
            channels_last=channels_last,
        )
        # a fitted basis is fitted as a build fits it, here on the calibration images
        ready_encoder(ctx, [ctx.source.read(np.arange(len(ctx.source))).images], None)
        setup = time.perf_counter() - started
        shape = (cfg.batch_size, source.channels, source.image_size, source.image_size)
        floor, spread = throughput_floor(ctx.model, shape, ctx.device)
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        task = Task(0, 0, len(ctx.source), derive_seed(cfg.seed, "task", 0))
        marker = TaskRun(ctx, task, 1).run()
        peak = None
        if ctx.device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(ctx.device) / 2**20, 1)
        groups = shard_bytes(Path(tmp), marker["files"])
    return Calibration(
        count, real, len(source), setup, floor, spread, marker, ctx.device, peak, untrained, groups
    )


def _group(column: str) -> str:
    """The column group of a record column or a tar member's extension."""
    if column.startswith("genome"):
        return "genome"
    return "image" if column in ("image", "png") else "metadata"


def shard_bytes(out: Path, files: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Bytes of the shards per format (parquet, webdataset) and column group (image, genome,
    metadata; `overhead`: parquet footers and page headers, tar headers and padding)."""
    totals: dict[str, dict[str, int]] = {}
    for entry in files:
        path = out / entry["path"]
        fmt = format_of(entry["path"])
        counted = defaultdict(int)
        for column, size in fmt.column_bytes(path).items():
            counted[_group(column)] += size
        counted["overhead"] = entry["bytes"] - sum(counted.values())
        into = totals.setdefault(fmt.name, defaultdict(int))
        for name, value in counted.items():
            into[name] += value
    return {fmt: dict(groups) for fmt, groups in totals.items()}


def bytes_per_record(cal: Calibration) -> dict[str, Any]:
    """Bytes per record per format and column group, and in all."""
    records = max(sum(t["records"] for t in cal.marker["tallies"].values()), 1)
    per = {
        fmt: {name: round(value / records, 1) for name, value in sorted(groups.items())}
        for fmt, groups in cal.shard_bytes.items()
    }
    for groups in per.values():
        groups["total"] = round(sum(groups.values()), 1)
    return {**per, "total": round(cal.bytes_per_record(), 1)}


def project(
    cal: Calibration, cfg: BuildConfig, sources: int, devices: int, workers: int = 1
) -> dict[str, Any]:
    """Wall seconds, records and bytes of `sources` images over `devices` ranks of `workers`
    one-thread task processes each: setup, then (a pool starting its processes as this one
    started: `setup_seconds` again) the tasks' makespan."""
    per_source = sum(cal.per_source().values())
    tasks = make_tasks(cfg, sources)
    per_rank = -(-len(tasks) // devices)  # the most tasks a rank gets
    pooled = min(workers, per_rank) > 1
    wall = cal.setup_seconds * (2 if pooled else 1)
    wall += _makespan(tasks, devices, workers, per_source)
    records = sources * (1 + len(cfg.attacks))
    return {
        "sources": sources,
        "devices": devices,
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "records": records,
        "bytes": int(cal.bytes_per_record() * records),
    }


def stage_table(cal: Calibration) -> list[dict[str, Any]]:
    """Per stage: seconds per source image and share of the task; for an attack (gradient
    passes, what the floor measures) its source images/s as a fraction of the forward+backward
    floor: an attack of n gradient steps reaches at most about 1/n of it."""
    per_source = cal.per_source()
    total = sum(per_source.values())
    rows = []
    for name, sec in sorted(per_source.items(), key=lambda kv: -kv[1]):
        row = {"stage": name, "seconds_per_source": round(sec, 6)}
        row["share"] = round(sec / total, 4) if total else 0.0
        if name.startswith("attack/") and sec:
            row["floor_fraction"] = round(1 / (sec * cal.floor), 4)
        rows.append(row)
    return rows


def estimate(
    cfg: BuildConfig,
    sources: int | None,
    devices: int,
    device: str,
    calibration: int | None = None,
    started: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Calibrate on this device as a build's task process computes (one numeric thread), then
    project a build of `sources` images on `devices` ranks of the task processes a build
    would start on each; `progress` hears each step as it starts."""
    workers = default_workers(device)
    with numeric_threads():
        progress(f"calibrating every stage on {device} (one batch of source images)")
        cal = calibrate(cfg, device, calibration, started)
        total = sources or cal.source_images
        projected = project(cal, cfg, total, devices, workers)
        # a small net trains on the train split of the whole source, whatever --limit says
        train_images = round((cal.source_images if cal.real else total) * cfg.splits.train)
        train_seconds = 0.0
        if cal.untrained:
            progress("timing the target model's training (it is not cached)")
            source, _ = _source_for(cfg, cal.sources)
            train_seconds = training_seconds(cfg, source, train_images, cal.device)
    projected["wall_seconds"] = round(projected["wall_seconds"] + train_seconds, 1)
    return {
        **projected,
        "device": str(cal.device),
        "device_name": device_name(cal.device, workers),
        "precision": cfg.precision,
        "calibration_sources": cal.sources,
        "calibration_source": "real" if cal.real else "synthetic random pixels",
        "setup_seconds": round(cal.setup_seconds, 2),
        "train_model_seconds": round(train_seconds, 2),
        "floor_images_per_s": round(cal.floor, 1),
        "floor_spread": cal.floor_spread,
        "bytes_per_record": bytes_per_record(cal),
        "stages": stage_table(cal),
    }


def device_name(device: torch.device, workers: int = 1) -> str:
    """The device, and on CPU the task processes a build runs on it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({workers} task process{'es' if workers > 1 else ''} of 1 torch thread)"
