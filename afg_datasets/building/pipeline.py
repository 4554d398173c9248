"""A build's per-process stages, set up once: source and splits, target model, layers, encoder,
schema and attacks. Nothing here writes; `WorkerSpec` re-creates a pipeline in another process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.attacks import Attack
from afg_datasets.building.stats import StageTimer, peak_rss_mb
from afg_datasets.config import BuildConfig
from afg_datasets.genome import EncoderInputs, make_encoder
from afg_datasets.layout import MODEL_DIR, SPLITS
from afg_datasets.models import (
    ModelInfo,
    SourceData,
    TargetModel,
    TrainSettings,
    forward_with_taps,
    load_model_dir,
    obtain_target_model,
)
from afg_datasets.plan import derive_seed
from afg_datasets.records import CLEAN, features_to_json, record_features
from afg_datasets.sources import Source, default_loader_workers, load_source
from afg_datasets.splits import assign_splits


def model_cache_key(cfg: BuildConfig) -> str:
    """Training inputs only: --limit, attacks and genome settings reuse the same model."""
    model = {k: v for k, v in asdict(cfg.model).items() if k != "layers"}
    key = {
        "source": cfg.to_dict()["source"],
        "model": model,
        "splits": asdict(cfg.splits),
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class Pipeline:
    """Source, model, encoder, schema and attacks of one build, in one process."""

    def __init__(
        self, cfg: BuildConfig, out: Path, device: str, progress: bool, channels_last: bool = True
    ):
        self.cfg = cfg
        self.channels_last = channels_last  # on CUDA; off only to measure what it buys
        self.out = out
        self.device = torch.device(device)
        self.progress = progress
        self.setup_timer = StageTimer()
        workers = cfg.source.workers
        self.loader_workers = default_loader_workers() if workers is None else workers

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
                self.model, self.model_info = self._load_saved(model_dir)
                self.model_cached = True
            else:
                self._obtain_model(full, split_of_all)
        self._bind_model()

    def adopt_model(self, model_dir: Path) -> None:
        """Use the model a build saved (so every rank and resumed run uses the same bytes)."""
        self.model, self.model_info = self._load_saved(model_dir)
        self._bind_model()

    def _load_saved(self, model_dir: Path):
        """A saved model of this build (its own config may name a `module:callable`)."""
        return load_model_dir(model_dir, str(self.device), trusted=self.cfg.model.architecture)

    def calibrate_with(self, source: Source, model: TargetModel, info: ModelInfo) -> None:
        """Set up on a given source sample and model (`afg estimate`; nothing is trained)."""
        self.source = source
        self.split_of = assign_splits(source.ids, self.cfg.seed, self.cfg.splits.ratios())
        self.model, self.model_info, self.model_cached = model, info, True
        self._bind_model()

    def _bind_model(self) -> None:
        """Precision, memory layout, layers, encoder, schema and attacks for the current model
        (validated here)."""
        self.model.set_precision(self.cfg.precision)
        # NHWC convolutions use the tensor cores best
        if self.device.type == "cuda" and self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.layers = tuple(self.cfg.model.layers or self.model_info.layers)
        self.model.check_layers(self.layers)
        size = self.source.image_size
        image_shape = (self.source.channels, size)
        probe = torch.zeros(1, self.source.channels, size, size, device=self.device)
        _, acts = forward_with_taps(self.model, self.layers, probe)
        self.layer_shapes = {name: tuple(acts[name].shape[1:]) for name in self.layers}
        self.encoder_inputs = EncoderInputs(
            self.layers,
            tuple(self.layer_shapes[n][0] for n in self.layers),
            derive_seed(self.cfg.seed, "nmf"),
            self.model,
            image_shape,
        )
        self.encoder = make_encoder(asdict(self.cfg.genome), self.encoder_inputs)
        self.features = record_features(self.source.class_names, self.encoder.features())
        self.attacks = [
            Attack(name, self.model, len(self.source.class_names), params)
            for name, params in self.cfg.attacks.items()
        ]
        self.variant_names = [CLEAN, *(a.name for a in self.attacks)]
        self.formats = self.cfg.output_formats()

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
            full,
            np.flatnonzero(split_of_all == "train"),
            np.flatnonzero(split_of_all == "test"),
            len(full.class_names),
            used=len(self.source),
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


@dataclass(frozen=True)
class WorkerSpec:
    """What another process needs to run tasks of a planned build (small and picklable)."""

    cfg: BuildConfig
    out: Path
    device: str
    num_tasks: int

    def pipeline(self, device: str | None = None) -> Pipeline:
        """A pipeline set up from the model the build saved in `out`."""
        pipeline = Pipeline(self.cfg, self.out, device or self.device, progress=False)
        pipeline.setup(model_dir=self.out / MODEL_DIR)
        return pipeline
