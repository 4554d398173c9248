"""A build's context, prepared once per process and frozen: source and splits, target model,
layers, encoder, schema, attacks and output formats. Task stages read it; nothing here
writes. `prepare` is the one entrance (`bind` for a given source and model: `afg estimate`);
`WorkerSpec` re-prepares it in another process from the model the build saved."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Features

from afg_datasets.attacks import Attack
from afg_datasets.building.plan import derive_seed
from afg_datasets.building.splits import assign_splits
from afg_datasets.building.stats import StageTimer, peak_rss_mb
from afg_datasets.building.threads import NUMERIC_THREADS
from afg_datasets.config import BuildConfig
from afg_datasets.files import atomic_write
from afg_datasets.formats import OutputFormat
from afg_datasets.genome import EncoderInputs, GenomeEncoder, StatefulEncoder, make_encoder
from afg_datasets.images import encode_png
from afg_datasets.layout import MODEL_DIR, SPLITS
from afg_datasets.models import (
    ModelInfo,
    SourceData,
    TargetModel,
    TrainSettings,
    forward_with_taps,
    load_model_dir,
    model_input,
    obtain_target_model,
)
from afg_datasets.records import CLEAN, features_to_json, record_features
from afg_datasets.sources import load_source
from afg_datasets.sources.base import Source, default_loader_workers


def model_cache_key(cfg: BuildConfig) -> str:
    """Training inputs only: --limit, attacks and genome settings reuse the same model. The
    thread count it was trained on is one (a model cached by 0.5, trained on any, is not used)."""
    model = {k: v for k, v in asdict(cfg.model).items() if k != "layers"}
    key = {
        "numeric_threads": NUMERIC_THREADS,
        "source": cfg.to_dict()["source"],
        "model": model,
        "splits": asdict(cfg.splits),
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Setup:
    """How the context was prepared (for tasks/setup.json: stats only)."""

    seconds: dict[str, float] = field(default_factory=dict)
    model_cached: bool = True


@dataclass(frozen=True)
class BuildContext:
    """Everything a task reads, for one build in one process."""

    cfg: BuildConfig
    out: Path
    device: torch.device
    progress: bool
    loader_workers: int
    source: Source
    split_of: np.ndarray  # split name per source index
    model: TargetModel
    model_info: ModelInfo
    layers: tuple[str, ...]
    layer_shapes: dict[str, tuple[int, ...]]
    encoder: GenomeEncoder
    features: Features
    attacks: list[Attack]
    formats: list[OutputFormat]
    setup: Setup
    channels_last: bool  # on CUDA; off only to measure what it buys

    @property
    def variant_names(self) -> list[str]:
        return [CLEAN, *(a.name for a in self.attacks)]

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
            "stages": {k: round(v, 3) for k, v in self.setup.seconds.items()},
            "peak_rss_mb": peak_rss_mb(),
            "target_model": {
                "test_accuracy": self.model_info.test_accuracy,
                "train_seconds": round(self.setup.seconds.get("train_model", 0.0), 3),
                "weights": self.model_info.weights,
                "cached": self.setup.model_cached,
            },
        }

    def with_saved_model(self, model_dir: Path) -> BuildContext:
        """The same context on the model a build saved (so every rank and resumed run uses
        the same bytes), its encoder's state loaded from there too (else fitted)."""
        model, info = load_saved(self.cfg, model_dir, self.device)
        ctx = bind(
            self.cfg, self.out, self.device, self.source, model, info,
            self.progress, self.setup, self.channels_last, self.split_of,
        )  # fmt: skip
        ready_encoder(ctx, source_train_images(ctx), model_dir)
        return ctx


def load_saved(cfg: BuildConfig, model_dir: Path, device: torch.device):
    """A saved model of this build (its own config may name a `module:callable`)."""
    return load_model_dir(model_dir, str(device), trusted=cfg.model.architecture)


def prepare(
    cfg: BuildConfig,
    out: Path,
    device: str,
    progress: bool = True,
    model_dir: Path | None = None,
    channels_last: bool = True,
) -> BuildContext:
    """Load the source, obtain the target model (trained or cached; from `model_dir` when given:
    a worker of a planned build) and bind the rest; validates everything, writes nothing."""
    timer, torch_device = StageTimer(), torch.device(device)
    with timer("load"):
        full = load_source(cfg.source)
        split_of_all = assign_splits(full.ids, cfg.seed, cfg.splits.ratios())
    source = full.head(cfg.limit)
    with timer("train_model"):
        if model_dir is not None:
            (model, info), cached = load_saved(cfg, model_dir, torch_device), True
        else:
            model, info, cached = _obtain_model(
                cfg, full, split_of_all, len(source), device, progress
            )
    setup = Setup(dict(timer.seconds), cached)
    split_of = split_of_all[: len(source)]
    ctx = bind(
        cfg, out, torch_device, source, model, info, progress, setup, channels_last, split_of
    )
    ready_encoder(ctx, source_train_images(ctx), model_dir)
    return ctx


FIT_BATCH = 64  # images per forward pass of an encoder's fit, in a build and in `afg encode`


def ready_encoder(ctx: BuildContext, images: Iterable[np.ndarray], state_dir: Path | None):
    """A stateful encoder (a fitted basis) made ready: its state loaded from `state_dir` when
    saved there, else fitted on `images` (clean train images, uint8 [B, H, W, C] chunks in
    source order; the first `fit_images` of them, in forward passes of FIT_BATCH)."""
    encoder = ctx.encoder
    if not isinstance(encoder, StatefulEncoder):
        return
    if state_dir is not None and (state_dir / encoder.STATE_FILE).is_file():
        encoder.load_state(state_dir / encoder.STATE_FILE)
        return

    def activations() -> Iterator[dict[str, torch.Tensor]]:
        for chunk in rebatched(images, FIT_BATCH, encoder.config.fit_images):
            yield forward_with_taps(ctx.model, ctx.layers, model_input(chunk, ctx.device))[1]

    encoder.fit(activations())


def save_encoder_state(ctx: BuildContext, state_dir: Path) -> None:
    """A stateful encoder's state and its atlas, saved beside the model (each unless it is
    there already: a resume keeps them)."""
    encoder = ctx.encoder
    if not isinstance(encoder, StatefulEncoder):
        return
    if not (state_dir / encoder.STATE_FILE).is_file():
        encoder.save_state(state_dir / encoder.STATE_FILE)
    if not (state_dir / encoder.ATLAS_FILE).is_file():
        png = encode_png(encoder.atlas()[0])
        atomic_write(state_dir / encoder.ATLAS_FILE, lambda handle: handle.write(png))


def source_train_images(ctx: BuildContext) -> Iterator[np.ndarray]:
    """The source's train images in source order, decoded a chunk at a time (bad ones left
    out): what a stateful encoder is fitted on in a build."""
    train = np.flatnonzero(ctx.split_of == "train")
    for start in range(0, len(train), FIT_BATCH):
        yield ctx.source.read(train[start : start + FIT_BATCH]).images


def rebatched(chunks: Iterable[np.ndarray], size: int, limit: int) -> Iterator[np.ndarray]:
    """The first `limit` rows of `chunks`, in batches of `size` (the last may be smaller)."""
    pending, taken = np.zeros(0, np.uint8), 0
    for chunk in chunks:
        chunk = chunk[: limit - taken]
        taken += len(chunk)
        pending = np.concatenate([pending, chunk]) if len(pending) else chunk
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
        if taken >= limit:
            break
    if len(pending):
        yield pending


def _obtain_model(
    cfg: BuildConfig, full: Source, split_of_all, used: int, device: str, progress: bool
):
    settings = TrainSettings(
        cfg.model.architecture,
        cfg.model.epochs,
        cfg.model.batch_size,
        cfg.model.lr,
        derive_seed(cfg.seed, "model"),
    )
    data = SourceData(
        full,
        np.flatnonzero(split_of_all == "train"),
        np.flatnonzero(split_of_all == "test"),
        len(full.class_names),
        used=used,
    )
    return obtain_target_model(
        cfg.model.architecture,
        cfg.model.checkpoint,
        settings,
        model_cache_key(cfg),
        data,
        device,
        progress,
    )


def bind(
    cfg: BuildConfig,
    out: Path,
    device: torch.device,
    source: Source,
    model: TargetModel,
    info: ModelInfo,
    progress: bool = False,
    setup: Setup | None = None,
    channels_last: bool = True,
    split_of: np.ndarray | None = None,
) -> BuildContext:
    """The context of `cfg` on a given source and model: precision, memory layout, layers,
    encoder, schema, attacks (validated here)."""
    model.set_precision(cfg.precision)
    if device.type == "cuda" and channels_last:  # NHWC convolutions use the tensor cores best
        model.to(memory_format=torch.channels_last)
    layers = tuple(cfg.model.layers or info.layers)
    model.check_layers(layers)
    image_shape = (source.channels, source.image_size)
    probe = torch.zeros(1, source.channels, source.image_size, source.image_size, device=device)
    _, acts = forward_with_taps(model, layers, probe)
    layer_shapes = {name: tuple(acts[name].shape[1:]) for name in layers}
    channels = tuple(layer_shapes[n][0] for n in layers)
    sizes = tuple(layer_shapes[n][1] for n in layers)
    seed = derive_seed(cfg.seed, "nmf")
    inputs = EncoderInputs(layers, channels, seed, model, image_shape, sizes)
    encoder = make_encoder(cfg.genome, inputs)
    classes = len(source.class_names)
    workers = cfg.source.workers
    return BuildContext(
        cfg=cfg,
        out=out,
        device=device,
        progress=progress,
        loader_workers=default_loader_workers() if workers is None else workers,
        source=source,
        split_of=assign_splits(source.ids, cfg.seed, cfg.splits.ratios())
        if split_of is None
        else split_of,
        model=model,
        model_info=info,
        layers=layers,
        layer_shapes=layer_shapes,
        encoder=encoder,
        features=record_features(source.class_names, encoder.features()),
        attacks=[Attack(name, model, classes, params) for name, params in cfg.attacks.items()],
        formats=cfg.output_formats(),
        setup=setup or Setup(),
        channels_last=channels_last,
    )


@dataclass(frozen=True)
class WorkerSpec:
    """What another process needs to run tasks of a planned build (small and picklable)."""

    cfg: BuildConfig
    out: Path
    device: str
    num_tasks: int

    def context(self, device: str | None = None) -> BuildContext:
        """A context prepared on the model the build saved in `out`."""
        return prepare(self.cfg, self.out, device or self.device, False, self.out / MODEL_DIR)
