"""The build wing of `afg`: build-shards, estimate, encode, finalize (registered by `cli.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from afg_datasets import printers
from afg_datasets.bounds import (
    MAX_BATCH,
    MAX_DEVICES,
    MAX_SOURCES,
)
from afg_datasets.checks import setting_pairs
from afg_datasets.cli_options import (
    AttacksOpt,
    CheckpointOpt,
    ConfigArg,
    CorpusArg,
    DeviceOpt,
    EncoderOpt,
    JsonOpt,
    LoaderWorkersOpt,
    ModelOpt,
    PrecisionOpt,
    SourceOpt,
    SourceRootOpt,
    ThreadsOpt,
    WorkersOpt,
)
from afg_datasets.printers import console

STARTED = time.perf_counter()  # `afg estimate` counts the imports a build pays as setup


def _configure(config, attacks, source, source_root, model, checkpoint, encoder, **changes):
    """The builder config with the build options `build-shards` and `estimate` share, plus
    `changes` (dotted as in BuildConfig.replace); options not given change nothing."""
    from afg_datasets.config import load_config

    cfg = load_config(config, model_code=model, encoder=encoder)
    if attacks is not None:
        names = [a.strip() for a in attacks.split(",") if a.strip()]
        cfg = cfg.replace(attacks={n: cfg.attacks.get(n, {}) for n in names})
    return cfg.replace(
        source__name=source,
        source__root=source_root,
        model__architecture=model,
        model__checkpoint=checkpoint,
        **changes,
    )


def build_shards(
    config: ConfigArg = None,
    out: Annotated[Path, typer.Option(help="Output corpus directory.")] = Path("afg"),
    limit: Annotated[int | None, typer.Option(help="Use only the first N source images.")] = None,
    source: SourceOpt = None,
    source_root: SourceRootOpt = None,
    loader_workers: LoaderWorkersOpt = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    attacks: AttacksOpt = None,
    encoder: EncoderOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = "cpu",
    seed: Annotated[int | None, typer.Option(help="Build seed (overrides the config).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a different corpus in --out.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Require a build in --out to resume (re-running the command resumes anyway)."
        ),
    ] = False,
    workers: WorkersOpt = None,
    rank: Annotated[
        int | None, typer.Option(help="This process's rank (default: torchrun/SLURM env, or 0).")
    ] = None,
    world_size: Annotated[
        int | None, typer.Option(help="Number of ranks sharing the build (with --rank).")
    ] = None,
    threads: ThreadsOpt = None,
    executor: Annotated[str, typer.Option(help="How tasks run: local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (e.g. auto); default: start one.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Build an AFG corpus: source -> target model -> attacks -> genomes -> parquet + webdataset.

    Re-running on the same --out resumes; with several ranks, `afg finalize` completes it."""
    from afg_datasets.building import RunOptions, build_corpus

    cfg = _configure(
        config,
        attacks,
        source,
        source_root,
        model,
        checkpoint,
        encoder,
        limit=limit,
        seed=seed,
        precision=precision,
        source__workers=loader_workers,
    )
    options = RunOptions(
        device=device,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        rank=rank,
        world_size=world_size,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
        threads=threads,
    ).resolve()
    result = build_corpus(cfg, out, options)
    if not result.manifest:
        console.print(
            f"rank {options.rank} of {options.world_size}: ran {len(result.tasks_run)} "
            "task(s); other ranks or processes are still building. When all have finished: "
            f"afg finalize {out}"
        )
        return
    if not result.tasks_run:
        console.print(
            f"[bold]already complete[/]: nothing in {out} was rebuilt; the figures below are "
            "the original build's (stats.json). Use --overwrite to build it again."
        )
    printers.build_summary(result)


def estimate(
    config: ConfigArg = None,
    sources: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_SOURCES, help="Source images to plan for (default: the source's)."
        ),
    ] = None,
    devices: Annotated[
        int, typer.Option(min=1, max=MAX_DEVICES, help="Devices (ranks) of this kind.")
    ] = 1,
    calibration: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_BATCH, help="Source images calibrated (default: one batch)."),
    ] = None,
    source: SourceOpt = None,
    source_root: SourceRootOpt = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    attacks: AttacksOpt = None,
    encoder: EncoderOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
):
    """Plan a build: calibrate every stage on this device, project wall time, records, bytes."""
    from afg_datasets.building.options import check_device
    from afg_datasets.perf.estimate import estimate as run

    check_device(device)
    cfg = _configure(
        config,
        attacks,
        source,
        source_root,
        model,
        checkpoint,
        encoder,
        precision=precision,
        source__workers=0,
    )
    say = lambda step: console.print(f"[dim]{step}...[/]")  # noqa: E731 - to stderr
    report = run(cfg, sources, devices, device, calibration, started=STARTED, progress=say)
    printers.report(report, as_json, printers.estimate)


def encode(
    directory: CorpusArg,
    out: Annotated[Path, typer.Option(help="Where the re-encoded corpus goes.")],
    encoder: EncoderOpt = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="NAME=VALUE: a setting of the chosen encoder, e.g. groups=8 (repeatable).",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace another corpus in --out.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Re-encode a corpus's stored images with another genome (no attack runs); unset genome
    settings keep the corpus's own, and the chosen encoder checks every one it is given.
    Verifies the corpus first; resumes like a build."""
    from afg_datasets.building.encode import encode_corpus
    from afg_datasets.corpus.corpus import Corpus

    genome = ({"encoder": encoder} if encoder else {}) | setting_pairs(setting or [])
    corpus = Corpus.open(directory)
    printers.build_summary(encode_corpus(corpus, out, genome, device, overwrite, progress))


def extend(
    directory: Annotated[Path, typer.Argument(help="A built corpus folder (its build state).")],
    attacks: Annotated[str, typer.Option(help="Comma-separated attacks to add (defaults).")],
    out: Annotated[
        Path | None,
        typer.Option(help="A new folder for the extended corpus (its files linked, not copied)."),
    ] = None,
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Add attacks to a built corpus: only their shards are computed, no stored file changes,
    and the result equals a fresh build with all the attacks. Resumes when re-run."""
    from afg_datasets.building.extend import extend_corpus
    from afg_datasets.corpus.corpus import local_folder

    names = [name.strip() for name in attacks.split(",") if name.strip()]
    folder = local_folder(directory, "afg extend")
    printers.build_summary(extend_corpus(folder, names, out, device, progress, workers))


def finalize(directory: Annotated[Path, typer.Argument(help="A build output directory.")]):
    """Write manifest, stats and card from every task's output (after a multi-rank build)."""
    from afg_datasets.building import finalize as finalize_corpus
    from afg_datasets.building.plan import output_lock, read_plan

    read_plan(directory)  # a clear error, and no lock file, where there is no build
    with output_lock(directory):
        result = finalize_corpus(directory)
    printers.build_summary(result)


COMMANDS = {
    "build-shards": build_shards,
    "estimate": estimate,
    "encode": encode,
    "extend": extend,
    "finalize": finalize,
}
