"""The build: source -> target model -> attacks -> genome -> records -> shards -> manifest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from afg_datasets import __version__
from afg_datasets.attacks import Attack
from afg_datasets.config import SPLITS, BuildConfig
from afg_datasets.errors import OutputDirError
from afg_datasets.genome import ENCODERS
from afg_datasets.models import (
    SourceData,
    TrainSettings,
    forward_with_taps,
    obtain_target_model,
    save_model,
)
from afg_datasets.records import CLEAN, RecordBatch, features_to_json, record_features
from afg_datasets.sources import load_source
from afg_datasets.splits import assign_splits
from afg_datasets.writers import PARTIAL, ParquetShardWriter, ShardFile, WebDatasetShardWriter

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
CARD_FILE = "README.md"
# Everything a build owns inside its output directory; nothing else there is ever touched.
OUTPUTS = ("data", "wds", "model", CARD_FILE, MANIFEST_FILE, STATS_FILE, PLAN_FILE)


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


@dataclass
class AttackTally:
    records: int = 0
    successes: int = 0
    linf: float = 0.0
    l2: float = 0.0

    def add(self, batch: RecordBatch) -> None:
        self.records += len(batch.labels)
        self.successes += int((batch.preds != batch.labels).sum())
        self.linf += float(batch.linf.sum())
        self.l2 += float(batch.l2.sum())

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
    files: list[ShardFile] = field(default_factory=list)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the build seed and a task's identity (stable across machines)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Atomically write indented JSON (insertion order: deterministic, and meaningful for
    attacks and columns)."""
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def corpus_hash(out: Path) -> str | None:
    """The config hash of the corpus (complete or in progress) in `out`, if any."""
    for name in (MANIFEST_FILE, PLAN_FILE):
        path = out / name
        if path.is_file():
            try:
                return json.loads(path.read_text())["config_hash"]
            except (ValueError, KeyError):
                return "unreadable"
    return None


def prepare_output(out: Path, cfg: BuildConfig, overwrite: bool) -> None:
    """Refuse to mix corpora; clear a previous build of ours; write the plan first."""
    new_hash = cfg.config_hash()
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {str(out)!r} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        existing = corpus_hash(out)
        if existing is None:
            raise OutputDirError(
                f"--out {str(out)!r} is not empty and holds no AFG corpus; "
                "choose a new or empty directory"
            )
        if existing != new_hash and not overwrite:
            raise OutputDirError(
                f"--out {str(out)!r} holds a different corpus (config hash {existing}, this build "
                f"{new_hash}); pass --overwrite to replace it, or choose another --out"
            )
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / PLAN_FILE,
        {"config": cfg.to_dict(), "config_hash": new_hash, "package_version": __version__},
    )


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
    """Holds a build's stages; `run` streams batches through them into shard writers."""

    def __init__(self, cfg: BuildConfig, out: Path, device: str, progress: bool):
        self.cfg = cfg
        self.out = out
        self.device = torch.device(device)
        self.progress = progress
        self.timer = StageTimer()
        self.tallies: dict[str, AttackTally] = defaultdict(AttackTally)

    def setup(self) -> None:
        with self.timer("load"):
            full = load_source(self.cfg.source)
            split_of_all = assign_splits(full.ids, self.cfg.seed, self.cfg.splits.ratios())
        with self.timer("train_model"):
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
        self.layers = tuple(self.cfg.model.layers or self.model_info.layers)
        self.model.check_layers(self.layers)
        self.source = full.head(self.cfg.limit)
        self.split_of = split_of_all[: len(self.source)]
        probe = torch.zeros(
            1, self.source.channels, *self.source.images.shape[1:3], device=self.device
        )
        _, acts = forward_with_taps(self.model, self.layers, probe)
        self.layer_shapes = {name: tuple(acts[name].shape[1:]) for name in self.layers}
        genome = self.cfg.genome
        self.encoder = ENCODERS[genome.encoder](
            self.layers,
            [self.layer_shapes[n][0] for n in self.layers],
            genome.groups,
            genome.size,
            genome.nmf_iters,
            derive_seed(self.cfg.seed, "nmf"),
        )
        self.features = record_features(self.source.class_names, self.encoder.features())
        self.attacks = [
            Attack(name, self.model, len(self.source.class_names), params)
            for name, params in self.cfg.attacks.items()
        ]

    def variants(self, split: str, batch_index: int, indices: np.ndarray) -> Iterator[RecordBatch]:
        """The clean records of a batch of sources, then each attack's records."""
        images = self.source.images[indices]
        labels = self.source.labels[indices]
        ids = [self.source.ids[i] for i in indices]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).to(self.device).float().div(255)
        y = torch.from_numpy(labels).to(self.device)
        zeros = np.zeros(len(indices), dtype=np.float32)
        yield self._encode(ids, CLEAN, "{}", x, images, labels, zeros, zeros)
        for attack in self.attacks:
            with self.timer(f"attack/{attack.name}"):
                adv = attack.run(x, y, derive_seed(self.cfg.seed, attack.name, split, batch_index))
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
            )

    def _encode(self, ids, attack, params, x, images, labels, linf, l2) -> RecordBatch:
        with self.timer("predict"):
            preds, acts = forward_with_taps(self.model, self.layers, x)
        with self.timer("encode"):
            genome = self.encoder.encode(acts)
        batch = RecordBatch(
            ids, attack, params, images, labels, preds.cpu().numpy(), linf, l2, genome
        )
        self.tallies[attack].add(batch)
        return batch

    def run(self) -> list[ShardFile]:
        parquet: dict[tuple[str, str], ParquetShardWriter] = {}
        webdataset: dict[str, WebDatasetShardWriter] = {}
        schema, rows = self.features.arrow_schema, self.cfg.rows_per_shard
        batches = [
            (split, b, chunk)
            for split in SPLITS
            for b, chunk in enumerate(self._chunks(np.flatnonzero(self.split_of == split)))
        ]
        try:
            for split, batch_index, indices in tqdm(
                batches, desc="build", unit="batch", disable=not self.progress
            ):
                for batch in self.variants(split, batch_index, indices):
                    with self.timer("write"):
                        pngs = batch.png()
                        key = (batch.attack, split)
                        if key not in parquet:
                            parquet[key] = ParquetShardWriter(
                                self.out / "data" / batch.attack, split, schema, rows
                            )
                        parquet[key].write(batch.to_arrow(self.features, pngs))
                        if split not in webdataset:
                            webdataset[split] = WebDatasetShardWriter(
                                self.out / "wds" / split, split, rows
                            )
                        webdataset[split].write(batch.wds_samples(self.features, pngs))
            with self.timer("write"):
                writers = [*parquet.values(), *webdataset.values()]
                return [f for w in writers for f in w.close()]
        except BaseException:
            for writer in [*parquet.values(), *webdataset.values()]:
                writer.abort()
            raise

    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        size = self.cfg.batch_size
        return [indices[i : i + size] for i in range(0, len(indices), size)]


def build_corpus(
    cfg: BuildConfig,
    out: str | os.PathLike,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build the corpus `cfg` describes into `out`; manifest.json is written last."""
    from afg_datasets.card import write_card

    out = Path(out)
    start = time.perf_counter()
    builder = Builder(cfg, out, device, progress)
    builder.setup()  # all validation (names, layers) happens before anything is written
    prepare_output(out, cfg, overwrite)
    files = builder.run()
    with builder.timer("write"):
        weights = save_model(builder.model, builder.model_info, out / "model")
    with builder.timer("hash"):
        manifest = make_manifest(builder, files, weights)
    stats = make_stats(builder, time.perf_counter() - start)
    write_json(out / STATS_FILE, stats)
    write_card(out, manifest, stats)
    write_json(out / MANIFEST_FILE, manifest)
    return BuildResult(out, manifest, stats, files)


def file_entry(out: Path, path: Path, rows: int | None) -> dict[str, Any]:
    return {
        "path": path.relative_to(out).as_posix(),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "rows": rows,
    }


def make_manifest(builder: Builder, files: list[ShardFile], weights: Path) -> dict[str, Any]:
    out, cfg = builder.out, builder.cfg
    data_files = sorted((file_entry(out, f.path, f.rows) for f in files), key=lambda e: e["path"])
    split_sources = {s: int((builder.split_of == s).sum()) for s in SPLITS}
    model_files = [file_entry(out, p, None) for p in sorted((out / "model").iterdir())]
    return {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "package_version": __version__,
        "seeds": {
            "build": cfg.seed,
            "model": derive_seed(cfg.seed, "model"),
            "nmf": derive_seed(cfg.seed, "nmf"),
            "attack": "derive_seed(build, attack, split, batch_index)",
        },
        "source": {
            "name": builder.source.name,
            "images": len(builder.source),
            "license": builder.source.license,
            "citation": builder.source.citation,
            "class_names": list(builder.source.class_names),
        },
        "model": {
            "sha256": sha256_file(weights),
            "path": "model/model.safetensors",
            **asdict(builder.model_info),
        },
        "layers": [
            {"name": n, "channels": s[0], "height": s[1], "width": s[2]}
            for n, s in builder.layer_shapes.items()
        ],
        "attacks": {a.name: a.params for a in builder.attacks},
        "features": features_to_json(builder.features),
        "splits": {
            s: {"sources": n, "records": n * (1 + len(builder.attacks))}
            for s, n in split_sources.items()
        },
        "files": data_files + model_files,
    }


def make_stats(builder: Builder, wall: float) -> dict[str, Any]:
    records = sum(t.records for t in builder.tallies.values())

    def stage_records(stage: str) -> int:
        kind, _, attack = stage.partition("/")
        return builder.tallies[attack].records if kind == "attack" else records

    stages = {
        name: {
            "seconds": round(sec, 3),
            "records_per_s": round(stage_records(name) / sec, 1) if sec else None,
        }
        for name, sec in sorted(builder.timer.seconds.items())
    }
    return {
        "records": records,
        "wall_seconds": round(wall, 3),
        "records_per_s": round(records / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(builder.device),
        "torch_threads": torch.get_num_threads(),
        "target_model": {
            "test_accuracy": builder.model_info.test_accuracy,
            "train_seconds": round(builder.timer.seconds["train_model"], 3),
            "weights": builder.model_info.weights,
            "cached": builder.model_cached,
        },
        "source": {"images": len(builder.source), "skipped": len(builder.source.skipped)},
        "clean": builder.tallies[CLEAN].summary(adversarial=False),
        "attacks": {
            a.name: builder.tallies[a.name].summary(adversarial=True) for a in builder.attacks
        },
        "stages": stages,
    }
