"""`afg bench-build --what source`: does a build's memory and start-up stay flat in the size of
an ImageNet-style source? Writes a synthetic JPEG folder of N and 10N images (100 classes,
200-500 px), builds `--limit 64` of each with the `imagenet` builder and a small torchvision
model from a local checkpoint, and measures decoding with 0 and 2 loader workers."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from afg_datasets.config import load_config
from afg_datasets.layout import STATS_FILE, TASKS_DIR, read_json
from afg_datasets.sources import load_source
from afg_datasets.sources.loading import decode_batches

CLASSES = 100
MODEL = "resnet18"


def write_jpeg_folder(root: Path, count: int, seed: int = 0, classes: int = CLASSES) -> Path:
    """`count` JPEGs of random smooth content and size 200-500 px in `classes` class folders
    (all made, so the class count does not depend on `count`)."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        (root / f"n{label:08d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        folder = root / f"n{i % classes:08d}"
        w, h = rng.integers(200, 501, size=2)
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        coarse.resize((int(w), int(h)), Image.Resampling.BILINEAR).save(
            folder / f"img_{i:07d}.JPEG", quality=85
        )
    return root


def write_checkpoint(path: Path, model: str = MODEL, classes: int = CLASSES) -> Path:
    """Random-weights torchvision weights for `classes` classes (no download)."""
    from torchvision.models import get_model

    torch.manual_seed(0)
    torch.save(get_model(model, num_classes=classes).state_dict(), path)
    return path


def _build(folder: Path, checkpoint: Path, out: Path, limit: int) -> dict[str, Any]:
    """One `afg build-shards imagenet --limit` process; its peak RSS, listing and start-up."""
    command = [
        sys.executable,
        "-m",
        "afg_datasets.cli",
        "build-shards",
        "imagenet",
        "--source-root",
        str(folder),
        "--model",
        MODEL,
        "--checkpoint",
        str(checkpoint),
        "--attacks",
        "fgsm",
        "--limit",
        str(limit),
        "--out",
        str(out),
        "--no-progress",
    ]
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"build of {folder} failed:\n{done.stderr[-2000:]}")
    stats = read_json(out / STATS_FILE)
    first = min(read_json(p)["started"] for p in (out / TASKS_DIR).glob("0*.json"))
    return {
        "peak_rss_mb": stats["peak_rss_mb"],
        "listing_seconds": stats["stages"]["load"]["wall_seconds"],
        "first_task_after_launch_s": round(first - launched, 2),
        "records": stats["records"],
    }


def decode_rate(folder: Path, images: int, workers: int, batch: int = 64) -> float:
    """Images/s decoding the first `images` of `folder` at 224 px through the task loader."""
    cfg = load_config("imagenet").source
    source = load_source(replace(cfg, root=str(folder)))
    batches = [np.arange(s, min(s + batch, images)) for s in range(0, images, batch)]
    start = time.perf_counter()
    decoded = sum(len(d.kept) for d in decode_batches(source.reader, batches, workers))
    return round(decoded / (time.perf_counter() - start), 1)


def source_scaling(size: int, limit: int, work: Path) -> dict[str, Any]:
    """Builds over N and 10N images; decode throughput with 0 and 2 loader workers."""
    checkpoint = write_checkpoint(work / "model.pt")
    results: dict[str, Any] = {"model": MODEL, "limit": limit}
    for count in (size, 10 * size):
        start = time.perf_counter()
        folder = write_jpeg_folder(work / f"folder-{count}", count)
        written = round(time.perf_counter() - start, 1)
        results[f"n{count}"] = {
            "images": count,
            "write_seconds": written,
            **_build(folder, checkpoint, work / f"afg-{count}", limit),
        }
    small, large = results[f"n{size}"], results[f"n{10 * size}"]
    results["rss_ratio"] = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    sample = min(512, size)
    results["decode_images_per_s"] = {
        f"workers_{w}": decode_rate(work / f"folder-{size}", sample, w) for w in (0, 2)
    }
    return results
