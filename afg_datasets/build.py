"""The build: source -> target model -> attacks -> genome -> records -> shards, task by task.

`build_corpus` plans (plan.json first), runs this rank's tasks (each idempotent, see plan.py)
with an executor, and finalizes when every task is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.attacks import Attack
from afg_datasets.config import SPLITS, BuildConfig
from afg_datasets.finalize import SETUP_FILE, AttackTally, BuildResult, finalize, task_markers
from afg_datasets.genome import make_encoder
from afg_datasets.models import (
    INFO_FILE,
    SourceData,
    TrainSettings,
    forward_with_taps,
    load_model_dir,
    obtain_target_model,
    save_model,
)
from afg_datasets.plan import (
    Task,
    check_output,
    clear_task,
    derive_seed,
    file_entry,
    make_tasks,
    marker_path,
    output_lock,
    parquet_path,
    plan_document,
    prepare_output,
    read_marker,
    tar_path,
    write_json,
)
from afg_datasets.records import CLEAN, RecordBatch, features_to_json, record_features
from afg_datasets.sources import load_source
from afg_datasets.splits import assign_splits
from afg_datasets.writers import ParquetShardWriter, WebDatasetShardWriter

log = logging.getLogger(__name__)


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


def model_cache_key(cfg: BuildConfig) -> str:
    """Training inputs only: --limit, attacks and genome settings reuse the same model."""
    model = {k: v for k, v in asdict(cfg.model).items() if k != "layers"}
    key = {
        "source": asdict(cfg.source),
        "model": model,
        "splits": asdict(cfg.splits),
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def quantize(adv: torch.Tensor, clean: torch.Tensor, linf: float | None) -> torch.Tensor:
    """[0,1] float -> uint8, exactly what a PNG stores. For Linf attacks, rounding is kept
    inside the budget: at most floor(eps * 255) levels away from the clean pixel."""
    stored = adv.mul(255).round()
    if linf is not None:
        levels = np.floor(linf * 255 + 1e-6)
        base = clean.mul(255).round()
        stored = torch.minimum(torch.maximum(stored, base - levels), base + levels)
    return stored.clamp(0, 255).to(torch.uint8)


class Builder:
    """A build's stages, set up once per process; `run_task` streams one task into shards."""

    def __init__(self, cfg: BuildConfig, out: Path, device: str, progress: bool):
        self.cfg = cfg
        self.out = out
        self.device = torch.device(device)
        self.progress = progress
        self.setup_timer = StageTimer()
        self.timer = StageTimer()
        self.tallies: dict[str, AttackTally] = defaultdict(AttackTally)

    def setup(self, model_dir: Path | None = None) -> None:
        """Load the source, obtain the target model (from `model_dir` when given: a worker
        of a planned build) and validate layers; nothing is written."""
        with self.setup_timer("load"):
            full = load_source(self.cfg.source)
            split_of_all = assign_splits(full.ids, self.cfg.seed, self.cfg.splits.ratios())
        self.source = full.head(self.cfg.limit)
        self.split_of = split_of_all[: len(self.source)]
        with self.setup_timer("train_model"):
            if model_dir is not None:
                self.model, self.model_info = load_model_dir(model_dir, str(self.device))
                self.model_cached = True
            else:
                self._obtain_model(full, split_of_all)
        self._bind_model()

    def adopt_model(self, model_dir: Path) -> None:
        """Use the model a build saved (so every rank and resumed run uses the same bytes)."""
        self.model, self.model_info = load_model_dir(model_dir, str(self.device))
        self._bind_model()

    def _bind_model(self) -> None:
        """Layers, encoder, schema and attacks for the current model (validated here)."""
        self.layers = tuple(self.cfg.model.layers or self.model_info.layers)
        self.model.check_layers(self.layers)
        probe = torch.zeros(
            1, self.source.channels, *self.source.images.shape[1:3], device=self.device
        )
        _, acts = forward_with_taps(self.model, self.layers, probe)
        self.layer_shapes = {name: tuple(acts[name].shape[1:]) for name in self.layers}
        self.encoder = make_encoder(
            asdict(self.cfg.genome),
            self.layers,
            [self.layer_shapes[n][0] for n in self.layers],
            derive_seed(self.cfg.seed, "nmf"),
            self.model,
            (self.source.channels, self.source.images.shape[1]),
        )
        self.features = record_features(self.source.class_names, self.encoder.features())
        self.attacks = [
            Attack(name, self.model, len(self.source.class_names), params)
            for name, params in self.cfg.attacks.items()
        ]
        self.variant_names = [CLEAN, *(a.name for a in self.attacks)]

    def _obtain_model(self, full, split_of_all) -> None:
        model_cfg = self.cfg.model
        settings = TrainSettings(
            model_cfg.architecture,
            model_cfg.epochs,
            model_cfg.batch_size,
            model_cfg.lr,
            derive_seed(self.cfg.seed, "model"),
        )
        data = SourceData(
            full.images,
            full.labels,
            np.flatnonzero(split_of_all == "train"),
            np.flatnonzero(split_of_all == "test"),
            len(full.class_names),
        )
        self.model, self.model_info, self.model_cached = obtain_target_model(
            model_cfg.architecture,
            model_cfg.checkpoint,
            settings,
            model_cache_key(self.cfg),
            data,
            str(self.device),
            self.progress,
        )

    def corpus_facts(self) -> dict[str, Any]:
        """What plan.json records about the corpus besides its tasks (no timings)."""
        cfg, source = self.cfg, self.source
        return {
            "seeds": {
                "build": cfg.seed,
                "model": derive_seed(cfg.seed, "model"),
                "nmf": derive_seed(cfg.seed, "nmf"),
                "task": "derive_seed(build, 'task', task_id)",
                "attack": "derive_seed(task_seed, attack, split, batch_index)",
            },
            "source": {
                "name": source.name,
                "images": len(source),
                "skipped": len(source.skipped),
                "license": source.license,
                "citation": source.citation,
                "class_names": list(source.class_names),
            },
            "layers": [
                {"name": n, "channels": s[0], "height": s[1], "width": s[2]}
                for n, s in self.layer_shapes.items()
            ],
            "attacks": {a.name: a.params for a in self.attacks},
            "features": features_to_json(self.features),
            "splits": {
                s: {"sources": n, "records": n * len(self.variant_names)}
                for s, n in ((s, int((self.split_of == s).sum())) for s in SPLITS)
            },
        }

    def setup_record(self) -> dict[str, Any]:
        """tasks/setup.json: the planning process's setup timings (stats only)."""
        return {
            "stages": {k: round(v, 3) for k, v in self.setup_timer.seconds.items()},
            "peak_rss_mb": peak_rss_mb(),
            "target_model": {
                "test_accuracy": self.model_info.test_accuracy,
                "train_seconds": round(self.setup_timer.seconds["train_model"], 3),
                "weights": self.model_info.weights,
                "cached": self.model_cached,
            },
        }

    def variants(
        self, task: Task, split: str, batch_index: int, indices: np.ndarray
    ) -> Iterator[RecordBatch]:
        """The clean records of a batch of sources, then each attack's records."""
        images = self.source.images[indices]
        labels = self.source.labels[indices]
        ids = [self.source.ids[i] for i in indices]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).to(self.device).float().div(255)
        y = torch.from_numpy(labels).to(self.device)
        zeros = np.zeros(len(indices), dtype=np.float32)
        seed = derive_seed(task.seed, "genome", split, batch_index)
        yield self._encode(ids, CLEAN, "{}", x, images, labels, zeros, zeros, seed)
        for attack in self.attacks:
            with self.timer(f"attack/{attack.name}"):
                adv = attack.run(x, y, derive_seed(task.seed, attack.name, split, batch_index))
                stored = quantize(adv, x, attack.linf_budget())
                delta = stored.float().div(255) - x
                linf = delta.flatten(1).abs().amax(1).cpu().numpy()
                l2 = delta.flatten(1).norm(dim=1).cpu().numpy()
            yield self._encode(
                ids,
                attack.name,
                attack.params_json,
                stored.float().div(255),
                stored.permute(0, 2, 3, 1).cpu().numpy(),
                labels,
                linf,
                l2,
                seed,
            )

    def _encode(self, ids, attack, params, x, images, labels, linf, l2, seed) -> RecordBatch:
        with self.timer("predict"):
            preds, acts = forward_with_taps(self.model, self.layers, x)
        with self.timer("encode"):
            genome = self.encoder.encode(acts, seed)
        batch = RecordBatch(
            ids, attack, params, images, labels, preds.cpu().numpy(), linf, l2, genome
        )
        self.tallies[attack].add(batch)
        return batch

    def run_task(self, task: Task, num_tasks: int) -> dict[str, Any]:
        """Write one task's shards (temp names, renamed at the end); returns its marker."""
        started = time.time()
        self.timer, self.tallies = StageTimer(), defaultdict(AttackTally)
        writers: dict[tuple[str, str], ParquetShardWriter | WebDatasetShardWriter] = {}
        schema = self.features.arrow_schema
        sources = np.arange(task.start, task.stop)
        try:
            for split in SPLITS:
                chosen = sources[self.split_of[sources] == split]
                for b, start in enumerate(range(0, len(chosen), self.cfg.batch_size)):
                    chunk = chosen[start : start + self.cfg.batch_size]
                    for batch in self.variants(task, split, b, chunk):
                        with self.timer("write"):
                            pngs = batch.png()
                            key = (batch.attack, split)
                            if key not in writers:
                                path = parquet_path(self.out, batch.attack, split, task, num_tasks)
                                writers[key] = ParquetShardWriter(path, schema)
                            writers[key].write(batch.to_arrow(self.features, pngs))
                            if ("wds", split) not in writers:
                                path = tar_path(self.out, split, task, num_tasks)
                                writers["wds", split] = WebDatasetShardWriter(path)
                            writers["wds", split].write(batch.wds_samples(self.features, pngs))
            with self.timer("write"):
                shards = [w.close() for w in writers.values()]
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        with self.timer("hash"):
            files = [file_entry(self.out, f.path, f.rows) for f in shards]
        return {
            "task": task.id,
            "worker": os.getpid(),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "started": started,
            "finished": time.time(),
            "peak_rss_mb": peak_rss_mb(),
            "tallies": {name: vars(t).copy() for name, t in self.tallies.items()},
            "stages": {k: round(v, 4) for k, v in self.timer.seconds.items()},
            "files": files,
        }


def complete_task(builder: Builder, task: Task, num_tasks: int) -> bool:
    """Run `task` unless its marker says it is done; the marker is written last.
    Returns whether it ran."""
    out = builder.out
    if read_marker(out, task) is not None:
        return False
    clear_task(out, task, num_tasks, builder.variant_names)
    marker = builder.run_task(task, num_tasks)
    marker_path(out, task).parent.mkdir(exist_ok=True)
    write_json(marker_path(out, task), marker)
    return True


@dataclass(frozen=True)
class RunOptions:
    """How (not what) to build: none of these change a corpus's bytes."""

    device: str = "cpu"
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    rank: int = 0
    world_size: int = 1
    workers: int = 1
    executor: str = "local"
    ray_address: str | None = None


def build_corpus(
    cfg: BuildConfig, out: str | os.PathLike, options: RunOptions | None = None, **changes: Any
) -> BuildResult:
    """Build (or resume) the corpus `cfg` describes in `out`: plan, this rank's tasks, and
    finalize when every task is complete (manifest.json last). `changes` set RunOptions fields."""
    from afg_datasets.executors import EXECUTORS

    opts = replace(options or RunOptions(), **changes)
    out = Path(out)
    start = time.perf_counter()
    builder = Builder(cfg, out, opts.device, opts.progress)
    builder.setup()  # all validation (names, layers) happens before anything is written
    check_output(out, cfg, opts.overwrite, opts.resume)
    tasks = make_tasks(cfg, len(builder.source))
    plan = plan_document(cfg, tasks, builder.corpus_facts())
    with output_lock(out):
        resumed = prepare_output(out, cfg, plan, opts.overwrite, opts.resume)
        if (out / "model" / INFO_FILE).is_file():  # planned earlier, or by another rank
            builder.adopt_model(out / "model")
        else:
            save_model(builder.model, builder.model_info, out / "model")
        if not (out / SETUP_FILE).is_file():
            (out / SETUP_FILE).parent.mkdir(exist_ok=True)
            write_json(out / SETUP_FILE, builder.setup_record())
    mine = tasks[opts.rank :: opts.world_size]
    ran = EXECUTORS[opts.executor](builder, mine, len(tasks), opts)
    with output_lock(out):
        if task_markers(out, plan)[1]:  # other ranks still have tasks to finish
            return BuildResult(out, {}, {}, ran)
        single = opts.world_size == 1 and not resumed
        result = finalize(out, time.perf_counter() - start if single else None)
    result.tasks_run = ran
    return result
