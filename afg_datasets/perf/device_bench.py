"""`afg bench-build --what device`: the build's GPU path, measured in one call.

An ImageNet-shaped synthetic source (224 px RGB JPEGs in 1,000 class folders, written here) and
`resnet50` with random weights saved as a local checkpoint (no download), taps layer1..layer4
and the `imagenet` builder's attacks. Each precision (and, on CUDA, `channels_last` on and off)
runs one task of `limit` source images through the build's own `TaskRun` (`perf.estimate`), so
every stage is timed exactly as in a build and judged against the model's own forward+backward
throughput (the floor). Beside it: the price of bf16 in attack success and distances, decode
overlap (loader workers 0 vs N), groupviz at Lucid's setting, peak device memory, the largest
batch the attacks fit, and the projection of ImageNet-val (50,000 images) on 8 such devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afg_datasets.building.stats import AttackTally
from afg_datasets.config import BuildConfig, load_config
from afg_datasets.genome.groupbasis import atlas_picture
from afg_datasets.models import forward_with_taps
from afg_datasets.perf.encoder_bench import render_seconds
from afg_datasets.perf.estimate import (
    Calibration,
    calibrate,
    device_name,
    project,
    stage_table,
)
from afg_datasets.perf.source_bench import write_checkpoint, write_jpeg_folder
from afg_datasets.perf.stand_ins import calibration_model, synthetic_source
from afg_datasets.records import CLEAN
from afg_datasets.sources import load_source
from afg_datasets.sources.base import default_loader_workers
from afg_datasets.sources.loading import decode_batches

MODEL = "resnet50"
CLASSES = 1000
VARIANTS = (  # (precision, channels_last); channels_last is a no-op off CUDA
    ("fp32", True),
    ("bf16", True),
    ("fp32", False),
    ("bf16", False),
)
IMAGENET_VAL = 50_000
PROJECTED_DEVICES = 8


def device_config(
    folder: Path, checkpoint: Path, sizes: DeviceSizes, encoder: str | None = None
) -> BuildConfig:
    """The `imagenet` builder (with `encoder`'s genome if given) on the synthetic folder and
    the random-weights ResNet-50."""
    cfg = load_config("imagenet", encoder=encoder)
    return cfg.replace(
        batch_size=sizes.batch_size,
        sources_per_task=sizes.sources,
        attacks={**(sizes.attacks or cfg.attacks), **sizes.added},
        source__root=str(folder),
        source__image_size=sizes.image_size,
        source__resize=sizes.image_size * 8 // 7,
        model__architecture=MODEL,
        model__checkpoint=str(checkpoint),
    )


def label_by_model(cfg: BuildConfig, device: str) -> None:
    """Move every image into the class folder the random-weights model predicts for it (as
    decoded for the build): the model is then right on every source, so every source is
    attacked and success rates and distances are those of a build, not of an empty tally."""
    source = load_source(cfg.source)
    model, _, _ = calibration_model(cfg, source, device)
    root, relative = source.reader.root, source.reader.relative
    for start in range(0, len(source), cfg.batch_size):
        chunk = np.arange(start, min(start + cfg.batch_size, len(source)))
        decoded = next(decode_batches(source.reader, [chunk], 0))
        x = torch.from_numpy(decoded.images).to(device).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            preds = model(x).argmax(1).tolist()
        for index, pred in zip(decoded.kept, preds, strict=True):
            old = root / relative[index]
            old.rename(root / source.class_names[pred] / old.name)


def _variant(cal: Calibration, precision: str, channels_last: bool) -> dict[str, Any]:
    stages = stage_table(cal)
    return {
        "precision": precision,
        "channels_last": channels_last,
        "floor_images_per_s": round(cal.floor, 1),
        "floor_spread": cal.floor_spread,
        "source_images_per_s": {s["stage"]: _rate(s["seconds_per_source"]) for s in stages},
        "floor_fraction": {
            s["stage"]: s["floor_fraction"] for s in stages if "floor_fraction" in s
        },
        "end_to_end_images_per_s": _rate(sum(cal.per_source().values())),
        "peak_device_mb": cal.peak_device_mb,
        "peak_rss_mb": cal.marker["peak_rss_mb"],
        "attacks": {
            name: AttackTally(**tally).summary(adversarial=True)
            for name, tally in cal.marker["tallies"].items()
            if name != CLEAN
        },
    }


def _rate(seconds_per_source: float) -> float | None:
    return round(1 / seconds_per_source, 2) if seconds_per_source else None


def bf16_price(fp32: dict[str, Any], bf16: dict[str, Any]) -> dict[str, dict[str, float]]:
    """bf16 minus fp32 per attack, same sources: what the faster precision costs."""
    return {
        name: {
            key: round(bf16["attacks"][name][key] - summary[key], 6)
            for key in ("success_rate", "mean_linf", "mean_l2")
        }
        for name, summary in fp32["attacks"].items()
    }


def decode_overlap(
    cfg: BuildConfig, device: str, with_workers: Calibration, workers: int
) -> dict[str, Any]:
    """Seconds the device waits for decoded batches with no loader workers (decoding in the
    attack loop) and with `workers` (the fp32 run above), same sources."""
    without = calibrate(cfg.replace(source__workers=0), device, with_workers.sources)

    def waits(cal: Calibration) -> dict[str, float]:
        stages = cal.marker["stages"]
        return {
            "decode_wait_seconds": round(stages.get("decode", 0.0), 3),
            "task_seconds": round(sum(stages.values()), 3),
        }

    return {"workers_0": waits(without), f"workers_{workers}": waits(with_workers)}


def groupviz_rate(cfg: BuildConfig, device: str, sources: int, floor: float) -> dict[str, Any]:
    """Records/s of `cfg`'s groupviz encoder at the builder's steps and render size (Lucid's 512
    steps, 128 px), timed inside a build task (clean + FGSM records, FGSM being the cheapest
    attack), as a fraction of the forward+backward floor, and what rendering ImageNet-val's
    records (clean + the builder's attacks) would take on PROJECTED_DEVICES such devices."""
    viz = cfg.replace(attacks={"fgsm": cfg.attacks["fgsm"]})
    cal = calibrate(viz, device, sources)
    records = sum(t["records"] for t in cal.marker["tallies"].values())
    seconds = cal.marker["stages"]["encode"]
    rate = records / seconds
    pictures = len(cfg.model.layers) * viz.genome.groups
    return {
        "records": records,
        "steps": viz.genome.steps,
        "image_size": viz.genome.image_size,
        "groups": viz.genome.groups,
        "encode_seconds": round(seconds, 3),
        "records_per_s": round(rate, 4),
        "pictures_per_s": round(rate * pictures, 3),
        "floor_fraction": round(rate / floor, 6),
        "imagenet_val": _render_projection(IMAGENET_VAL * (1 + len(cfg.attacks)), rate),
    }


def _render_projection(records: int, records_per_s: float) -> dict[str, Any]:
    seconds = records / records_per_s / PROJECTED_DEVICES
    return {"records": records, "devices": PROJECTED_DEVICES, "wall_seconds": round(seconds, 1)}


def atlas_rate(cfg: BuildConfig, device: str, floor: float) -> dict[str, Any]:
    """A groupbasis atlas of `cfg`'s model (its `groups` directions per tapped layer at
    `atlas_steps`, `atlas_picture` size), rendered once per corpus on one device: seconds,
    pictures/s, and its render passes/s as a fraction of the forward+backward floor (passes at
    the atlas's size against the floor's at the model's size)."""
    source = synthetic_source(cfg, 1)
    model, _, _ = calibration_model(cfg, source, device)
    layers = list(cfg.model.layers)
    x, _ = source.tensors(np.arange(1))
    _, acts = forward_with_taps(model, layers, x.to(device))
    picture = atlas_picture((source.channels, source.image_size))
    widths = [acts[layer].shape[1] for layer in layers]
    row = render_seconds(model, layers, widths, picture, cfg.genome.groups, cfg.genome.atlas_steps)
    passes = row["pictures"] * row["steps"] / row["seconds"]
    return row | {
        "pictures_per_s": round(row["pictures"] / row["seconds"], 4),
        "floor_fraction": round(passes / floor, 4),
    }


def largest_batch(cfg: BuildConfig, device: str, cap: int) -> dict[str, Any]:
    """The largest power-of-two batch, from the build's up to `cap`, at which the attacks'
    step (a forward+backward with respect to the input) fits in device memory."""
    dev = torch.device(device)
    source = synthetic_source(cfg, 1)
    model, _, _ = calibration_model(cfg, source, device)
    model.set_precision(cfg.precision)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    shape = (source.channels, source.image_size, source.image_size)
    fits, tried, batch = None, [], cfg.batch_size
    while batch <= cap:
        tried.append(batch)
        try:
            x = torch.rand(batch, *shape, device=dev, requires_grad=True)
            model(x).logsumexp(1).sum().backward()
            _synchronize(dev)
        except torch.OutOfMemoryError:
            break
        finally:
            x = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        fits, batch = batch, batch * 2
    limited = "cap" if fits is not None and fits == tried[-1] else "device memory"
    return {"largest_fitting": fits, "tried": tried, "limited_by": limited, "cap": cap}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class DeviceSizes:
    """How much one device check measures. `full` is sized for one H100/H200-class GPU to
    finish in about 4 minutes (5 tasks of 128 ResNet-50 sources with FGSM, PGD-10 and
    CW-L2 30x3, about 105 forward+backward passes each, plus groupviz at 512 steps on 4
    sources); `tiny` only proves the command and its fields on a CPU."""

    sources: int  # source images per calibrated task
    batch_size: int
    image_size: int
    groupviz_sources: int
    render_steps: int | None  # groupviz and atlas steps; None: the builder's (512)
    batch_cap: int  # the largest batch tried
    attacks: dict[str, dict[str, Any]] | None = None  # None: the builder's
    # timed beside them: torchattacks' APGD-CE and Square (a score-based black box), at the
    # builder's Linf eps (4/255), budgets a GPU check can afford
    added: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "apgd_ce": {"eps": 0.0156863, "steps": 10},
            "square": {"eps": 0.0156863, "n_queries": 100},
        }
    )


PRESETS = {
    "full": DeviceSizes(128, 64, 224, 4, None, 1024),
    "tiny": DeviceSizes(
        2,
        2,
        32,
        1,
        2,
        4,
        {
            "fgsm": {"eps": 0.0156863},
            "pgd": {"eps": 0.0156863, "nb_iter": 2, "eps_iter": 0.0078431},
            "cw_l2": {"max_iterations": 2, "binary_search_steps": 1},
        },
        {"apgd_ce": {"eps": 0.0156863, "steps": 2}, "square": {"eps": 0.0156863, "n_queries": 4}},
    ),
}


def bench_device(device: str, preset: str, work: Path) -> dict[str, Any]:
    """Every device figure in one JSON-ready dict (see the module docstring)."""
    started = time.perf_counter()
    sizes = PRESETS[preset]
    dev = torch.device(device)
    folder = write_jpeg_folder(work / "images", sizes.sources, classes=CLASSES)
    checkpoint = write_checkpoint(work / "resnet50.pt", MODEL, CLASSES)
    cfg = device_config(folder, checkpoint, sizes)
    label_by_model(cfg, device)
    workers = min(default_loader_workers(), 4) or 1
    variants = VARIANTS if dev.type == "cuda" else VARIANTS[:2]
    runs, calibrations = [], {}
    for precision, channels_last in variants:
        run_cfg = cfg.replace(precision=precision, source__workers=workers)
        cal = calibrate(run_cfg, device, sizes.sources, channels_last=channels_last)
        calibrations.setdefault(precision, cal)  # the first of each: channels_last as built
        runs.append(_variant(cal, precision, channels_last))
    fp32 = calibrations["fp32"]
    viz_cfg = device_config(folder, checkpoint, sizes, "groupviz").replace(
        genome__steps=sizes.render_steps
    )
    atlas_cfg = device_config(folder, checkpoint, sizes, "groupbasis").replace(
        genome__atlas_steps=sizes.render_steps
    )
    projection = {
        precision: project(cal, cfg, IMAGENET_VAL, PROJECTED_DEVICES)
        for precision, cal in calibrations.items()
    }
    atlas = atlas_rate(atlas_cfg, device, fp32.floor)
    atlas["share_of_projected_build"] = round(
        atlas["seconds"] / projection["fp32"]["wall_seconds"], 5
    )
    return {
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "preset": preset,
        "model": MODEL,
        "classes": CLASSES,
        "image_size": cfg.source.image_size,
        "layers": list(cfg.model.layers),
        "attacks": cfg.attacks,
        "batch_size": cfg.batch_size,
        "sources": sizes.sources,
        "loader_workers": workers,
        "variants": runs,
        "bf16_price": bf16_price(runs[0], runs[1]),
        "decode_overlap": decode_overlap(cfg, device, fp32, workers),
        "groupviz": groupviz_rate(viz_cfg, device, sizes.groupviz_sources, fp32.floor),
        "atlas": atlas,
        "largest_batch": largest_batch(cfg, device, sizes.batch_cap),
        "imagenet_val_projection": projection,
        "seconds": round(time.perf_counter() - started, 1),
    }
