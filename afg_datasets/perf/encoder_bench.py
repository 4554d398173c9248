"""`afg bench-encoder`: the batched genome encoder against the one-at-a-time way.

groupviz: every visualization of a batch optimized together vs one optimization loop per group
and layer (the Lucid/Lucent way), same steps and resolution. NMF: batched torch multiplicative
updates vs scikit-learn's NMF run per sample and layer, with the reconstruction error of both.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import NMF

from afg_datasets.building.context import BuildContext, prepare
from afg_datasets.config import BuildConfig
from afg_datasets.genome.groupbasis import atlas_picture, contrast_objectives
from afg_datasets.genome.groupviz import LUCID_LR, render
from afg_datasets.genome.nmf import batched_nmf, relative_error
from afg_datasets.models import forward_until, forward_with_taps


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def bench_nmf(acts: dict[str, torch.Tensor], groups: int, iters: int, seed: int) -> dict:
    """Same matrices, same iteration count, same kind of start (random, multiplicative updates)."""
    matrices = [a.clamp_min(0).flatten(2).transpose(1, 2).cpu().double() for a in acts.values()]

    def torch_all():
        return [batched_nmf(x.float(), groups, iters, seed) for x in matrices]

    def sklearn_each():
        return [
            _sklearn_error(sample, groups, iters, seed) for x in matrices for sample in x.numpy()
        ]

    torch_s, torch_factors = _timed(torch_all)
    sklearn_s, sklearn_errors = _timed(sklearn_each)
    torch_error = torch.cat(
        [relative_error(x.float(), w, h) for x, (w, h) in zip(matrices, torch_factors, strict=True)]
    )
    return {
        "factorizations": len(sklearn_errors),
        "torch_seconds": round(torch_s, 4),
        "sklearn_seconds": round(sklearn_s, 4),
        "nmf_speedup": round(sklearn_s / torch_s, 2),
        "torch_relative_error": round(float(torch_error.mean()), 5),
        "sklearn_relative_error": round(float(np.mean(sklearn_errors)), 5),
        "error_ratio": round(float(torch_error.mean()) / float(np.mean(sklearn_errors)), 4),
    }


def _sklearn_error(sample: np.ndarray, groups: int, iters: int, seed: int) -> float:
    model = NMF(groups, init="random", solver="mu", max_iter=iters, tol=0, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_iter reached" is what this comparison asks for
        w = model.fit_transform(sample)
    residual = np.linalg.norm(sample - w @ model.components_)
    return float(residual / max(np.linalg.norm(sample), 1e-10))


def bench_groupviz(ctx: BuildContext, directions: list[torch.Tensor], seed: int) -> dict:
    encoder = ctx.encoder
    args = encoder.render_settings()
    model, layers = ctx.model, encoder.layers
    batched_s, (_, trace) = _timed(lambda: render(model, layers, directions, *args, seed))

    def one_at_a_time():
        for layer, direction in zip(layers, directions, strict=True):
            for b in range(direction.shape[0]):
                for g in range(direction.shape[1]):
                    render(model, [layer], [direction[b : b + 1, g : g + 1]], *args, seed)

    loop_s, _ = _timed(one_at_a_time)
    count = trace.shape[1]
    return {
        "visualizations": count,
        "steps": args[2],
        "image_size": args[1],
        "batched_seconds": round(batched_s, 3),
        "one_at_a_time_seconds": round(loop_s, 3),
        "speedup": round(loop_s / batched_s, 2),
        "visualizations_per_s": round(count / batched_s, 3),
        "objective_gain_median": round(float((trace[-1] / trace[0].clamp_min(1e-8)).median()), 2),
        "fraction_of_model_fwd_bwd": _fraction_of_model(ctx, directions, batched_s),
    }


LUCID = (512, 0.05)  # Lucid's steps and Adam learning rate: the reference objective
CURVE = ((32, 0.05), (64, 0.05), (128, 0.05), (256, 0.05), (32, 0.8), (40, 0.6), (48, 0.6))


def render_curve(ctx: BuildContext, directions: list[torch.Tensor], seed: int) -> list[dict]:
    """Records/s and the objective each visualization reaches (without transforms, as a
    fraction of Lucid's 512 steps at lr 0.05; mean and minimum over visualizations) for each
    (steps, lr) of CURVE and the encoder's own setting."""
    channels, size, steps, lr = ctx.encoder.render_settings()
    points = list(dict.fromkeys([LUCID, *CURVE, (steps, lr)]))
    finals, rows = {}, []
    for point in points:
        args = (ctx.model, ctx.encoder.layers, directions, channels, size, *point, seed)
        seconds, (_, trace) = _timed(lambda args=args: render(*args))
        finals[point] = trace[-1]
        rows.append({"steps": point[0], "lr": point[1], "seconds": round(seconds, 3)})
    records = directions[0].shape[0]
    for row, point in zip(rows, points, strict=True):
        ratio = finals[point] / finals[LUCID].clamp_min(1e-8)
        row |= {
            "records_per_s": round(records / row["seconds"], 3),
            "objective_vs_lucid": round(float(ratio.mean()), 3),
            "objective_vs_lucid_min": round(float(ratio.min()), 3),
            "setting": "lucid" if point == LUCID else "encoder" if point == (steps, lr) else "",
        }
    return rows


def atlas_seconds(ctx: BuildContext, groups: int, steps: int) -> dict[str, Any]:
    """What a basis atlas costs on this build's model and device (`render_seconds`)."""
    picture = atlas_picture((ctx.source.channels, ctx.source.image_size))
    return render_seconds(ctx.model, ctx.layers, ctx.encoder.channels, picture, groups, steps)


def render_seconds(
    model, layers: list[str], widths: list[int], picture: tuple[int, int], groups: int, steps: int
) -> dict[str, Any]:
    """`groups` random non-negative unit directions per layer (`widths`: its channels; the
    cost does not depend on which) rendered together at `steps` (lr 0.05, the atlas's
    objective) as `picture` = (channels, size) images on the model's device: an atlas's cost."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    directions = [
        F.normalize(torch.rand(1, groups, width, generator=generator), dim=-1).to(device)
        for width in widths
    ]
    args = (model, layers, directions, *picture, steps, LUCID_LR, 0)
    seconds, _ = _timed(lambda: (render(*args, objective=contrast_objectives), _sync(device)))
    return {"pictures": len(layers) * groups, "steps": steps, "image_size": picture[1],
            "seconds": round(seconds, 2)}  # fmt: skip


def _fraction_of_model(ctx: BuildContext, directions: list[torch.Tensor], seconds: float) -> float:
    """The share of the encoder's time that the model's own forward+backward passes would take
    alone (same per-layer batches, same device, no parameterization, transforms or Adam):
    how close the encoder runs to what the hardware does for this model."""
    channels, size, steps, _ = ctx.encoder.render_settings()
    slices = [
        (layer, torch.rand(d.shape[0] * d.shape[1], channels, size, size, device=ctx.device))
        for layer, d in zip(ctx.layers, directions, strict=True)
    ]

    def passes():
        for layer, x in slices:
            x.requires_grad_(True)
            forward_until(ctx.model, [layer], x)[layer].sum().backward()
        _sync(ctx.device)

    passes()  # warm-up
    repeats = 5
    model_s, _ = _timed(lambda: [passes() for _ in range(repeats)])
    return round(model_s / repeats * steps / seconds, 3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_encoder(
    cfg: BuildConfig, samples: int, device: str = "cpu", seed: int = 0, curve: bool = False
) -> dict[str, Any]:
    """Both comparisons on the first `samples` source images of `cfg` at its layers; with
    `curve` (groupviz), the render's records/s and objective against Lucid's 512 steps."""
    ctx = prepare(cfg.replace(limit=samples), Path("."), device, progress=False)
    x, _ = ctx.source.tensors(np.arange(len(ctx.source)))
    _, acts = forward_with_taps(ctx.model, ctx.layers, x.to(ctx.device))
    genome = cfg.genome
    results: dict[str, Any] = {
        "encoder": genome.encoder,
        "samples": len(x),
        "layers": list(ctx.layers),
        "groups": genome.groups,
        "device": str(ctx.device),
        "torch_threads": torch.get_num_threads(),
        "nmf": bench_nmf(acts, genome.groups, genome.nmf_iters, seed % 2**32),
    }
    if genome.encoder == "groupbasis":
        results["atlas"] = atlas_seconds(ctx, genome.groups, genome.atlas_steps)
    if genome.encoder == "groupviz":
        _, _, directions = ctx.encoder.factorize(acts)  # once: both comparisons render these
        results["groupviz"] = bench_groupviz(ctx, directions, seed)
        if curve:
            results["render_curve"] = render_curve(ctx, directions, seed)
    return results
