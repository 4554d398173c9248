"""The `afg` command line: parse -> config -> call. No pipeline logic lives here."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from afg_datasets import __version__, printers
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
    UnseenOpt,
)
from afg_datasets.errors import AFGError
from afg_datasets.layout import AFS_JSON, AFS_PNG, BENCH_DIR, CARD_FILE
from afg_datasets.printers import console

STARTED = time.perf_counter()  # `afg estimate` counts the imports a build pays as setup


class _OneLineErrors(TyperGroup):
    """The one error handler: an error the user caused (bad value, unusable file or folder)
    ends in one line naming it and exit 2; `--debug` shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (AFGError, OSError) as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=_OneLineErrors,
    help="Build, publish and consume Adversarial Feature Genome (AFG) corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"afg-datasets {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    debug: Annotated[
        bool, typer.Option(help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
):
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _configure(config, attacks, source, source_root, model, checkpoint, encoder, **changes):
    """The builder config with the build options `build-shards` and `estimate` share, plus
    `changes` (dotted as in BuildConfig.replace); options not given change nothing."""
    from afg_datasets.config import load_config

    cfg = load_config(config)
    if attacks is not None:
        names = [a.strip() for a in attacks.split(",") if a.strip()]
        cfg = cfg.replace(attacks={n: cfg.attacks.get(n, {}) for n in names})
    return cfg.replace(
        source__name=source,
        source__root=source_root,
        model__architecture=model,
        model__checkpoint=checkpoint,
        genome__encoder=encoder,
        **changes,
    )


@app.command("build-shards")
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
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Local worker processes (default: 1; on cuda, one per GPU)."),
    ] = None,
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
    from afg_datasets.build import RunOptions, build_corpus
    from afg_datasets.build.executors import default_workers, rank_device, resolve_ranks

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
    rank, world_size, local_rank = resolve_ranks(rank, world_size)
    device = rank_device(device, local_rank)
    workers = workers or default_workers(device)
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
    )
    result = build_corpus(cfg, out, options)
    if not result.manifest:
        console.print(
            f"rank {rank} of {world_size}: ran {len(result.tasks_run)} task(s); other ranks or "
            f"processes are still building. When all have finished: afg finalize {out}"
        )
        return
    printers.build_summary(result)


@app.command()
def estimate(
    config: ConfigArg = None,
    sources: Annotated[
        int | None, typer.Option(min=1, help="Source images to plan for (default: the source's).")
    ] = None,
    devices: Annotated[int, typer.Option(min=1, help="Devices (ranks) of this kind.")] = 1,
    calibration: Annotated[
        int | None, typer.Option(min=1, help="Source images calibrated (default: one batch).")
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
    from afg_datasets.build.options import check_device
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
    report = run(cfg, sources, devices, device, calibration, started=STARTED)
    printers.report(report, as_json, printers.estimate)


@app.command()
def finalize(directory: Annotated[Path, typer.Argument(help="A build output directory.")]):
    """Write manifest, stats and card from every task's output (after a multi-rank build)."""
    from afg_datasets.build import finalize as finalize_corpus
    from afg_datasets.plan import output_lock, read_plan

    read_plan(directory)  # a clear error, and no lock file, where there is no build
    with output_lock(directory):
        result = finalize_corpus(directory)
    printers.build_summary(result)


@app.command()
def card(directory: CorpusArg):
    """Regenerate the dataset card (README.md) from manifest.json and stats.json."""
    from afg_datasets.card import refresh_card

    typer.echo(f"wrote {refresh_card(directory)}")


@app.command()
def verify(directory: CorpusArg):
    """Check every file against the manifest, the schema against the card, splits and keys."""
    from afg_datasets.verify import verify_corpus

    problems = verify_corpus(directory)
    for line in problems:
        typer.echo(line)
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/] in {directory}")
        raise typer.Exit(code=1)
    typer.echo(f"{directory}: OK")


@app.command()
def push(
    directory: CorpusArg,
    repo_id: Annotated[str, typer.Option(help="Hub dataset repo, NAMESPACE/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to push to.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and list the upload only.")] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a Hub request may wait without progress.")
    ] = 60.0,
):
    """Publish a corpus to the Hugging Face Hub (token: HF_TOKEN or the saved login)."""
    from afg_datasets.hub import push as push_corpus

    plan = push_corpus(
        directory, repo_id, private=private, revision=revision, dry_run=dry_run, timeout=timeout
    )
    printers.upload(plan, repo_id, dry_run)


@app.command()
def bench(
    directory: CorpusArg,
    out: Annotated[Path | None, typer.Option(help="Output folder (default DIR/bench).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Training seeds per method.")] = 3,
    quick: Annotated[bool, typer.Option(help="1 seed, fewer epochs.")] = False,
    unseen: UnseenOpt = "all",
    adaptive: Annotated[
        bool, typer.Option(help="Add white-box PGD against each detector (slow).")
    ] = False,
):
    """Benchmark the AFG recognizer against raw pixels, Mahalanobis, LID and the target model."""
    from afg_datasets.card import refresh_card
    from afg_datasets.evaluation.bench import run_bench
    from afg_datasets.evaluation.report import results_table

    report = run_bench(
        directory,
        out,
        seeds=seeds,
        quick=quick,
        unseen=unseen,
        attack_systems=adaptive,
        progress=lambda step: console.print(f"[dim]{step}[/]"),
    )
    if out is None:
        refresh_card(directory)  # the card shows bench/results.md
    typer.echo(results_table(report))
    written = out or directory / BENCH_DIR
    typer.echo(f"{report['seconds']:.0f}s; wrote {written}/results.json, results.md, roc.png")


@app.command("bench-loader")
def bench_loader(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to read.")] = "train",
    repeats: Annotated[int, typer.Option(help="Passes per reader; the median is reported.")] = 3,
    as_json: JsonOpt = False,
):
    """records/s and MB/s of dataloader, stream and load against datasets' own readers."""
    from afg_datasets.perf.loader_bench import bench_loaders

    printers.report(bench_loaders(directory, split, repeats), as_json, printers.loader_bench)


@app.command("bench-build")
def bench_build(
    config: ConfigArg = None,
    what: Annotated[
        str, typer.Option(help="Comma-separated: kill, scaling, memory, source.")
    ] = "kill,scaling,memory",
    limit: Annotated[int, typer.Option(min=1, help="Source images per build (x1).")] = 256,
    sources_per_task: Annotated[int, typer.Option(min=1, help="Task size for the builds.")] = 32,
    points: Annotated[int, typer.Option(min=1, help="Random kill points.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the kill points.")] = 0,
    source_images: Annotated[
        int, typer.Option(min=1, help="source: N of the N vs 10N image folders.")
    ] = 2000,
    work_dir: Annotated[
        Path | None, typer.Option(help="Where the temporary builds go (default: system temp).")
    ] = None,
    as_json: JsonOpt = False,
):
    """SIGKILL-and-resume, weak scaling (1 vs 2 workers), peak RSS (x1 vs x4) of real builds;
    `source`: an imagenet build over N vs 10N JPEGs (memory, start-up, decode rate)."""
    from afg_datasets.config import load_config
    from afg_datasets.perf.build_bench import BenchSettings
    from afg_datasets.perf.build_bench import bench_build as run

    cfg = load_config(config).replace(sources_per_task=sources_per_task)
    names = [w.strip() for w in what.split(",") if w.strip()]
    settings = BenchSettings(limit, points, seed, source_images)
    results = run(cfg, names, settings, work_dir)
    printers.report(results, as_json, printers.build_bench)


@app.command("bench-encoder")
def bench_encoder(
    config: ConfigArg = None,
    encoder: Annotated[
        str | None, typer.Option(help="groupviz or groupmap (default: the config's).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Source images to encode.")] = 8,
    steps: Annotated[int | None, typer.Option(help="groupviz steps (default: config).")] = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
):
    """Batched encoder vs one visualization / one NMF at a time: seconds, speedups, errors."""
    from afg_datasets.build.options import check_device
    from afg_datasets.config import load_config
    from afg_datasets.perf.encoder_bench import bench_encoder as run

    cfg = load_config(config).replace(genome__encoder=encoder, genome__steps=steps)
    check_device(device)
    printers.report(run(cfg, samples, device), as_json, printers.encoder_bench)


@app.command("afs")
def afs_command(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to measure.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the same-class clean pairs.")] = 0,
):
    """Adversarial feature separability: clean-vs-adversarial distance per attack and layer
    (raw activations and genome); writes afs.json, afs.png and refreshes the card."""
    from afg_datasets.evaluation.afs import afs

    printers.afs(afs(directory, split, seed))
    typer.echo(f"wrote {directory / AFS_JSON}, {directory / AFS_PNG}, {CARD_FILE}")


@app.command()
def show(
    directory: CorpusArg,
    key: Annotated[str, typer.Argument(help="Record key, e.g. digits-00004-fgsm.")],
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: ./show-KEY.png).")
    ] = None,
):
    """One figure: clean image, adversarial image, amplified perturbation, both genomes."""
    from afg_datasets.evaluation.show import show as show_record

    path = show_record(directory, key, out)
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
