"""The `afg` command line: parse -> config -> call. No pipeline logic lives here."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from afg_datasets import __version__, cli_research, printers
from afg_datasets.bounds import (
    MAX_BATCH,
    MAX_COMMIT_FILES,
    MAX_DEVICES,
    MAX_GENOME_SIZE,
    MAX_GROUPS,
    MAX_ITERS,
    MAX_PROCESSES,
    MAX_SOURCES,
)
from afg_datasets.checks import setting_pairs
from afg_datasets.cli_options import (
    AttacksOpt,
    CheckpointOpt,
    ConfigArg,
    CorpusArg,
    DeviceOpt,
    DryRunOpt,
    EncoderOpt,
    JsonOpt,
    LoaderWorkersOpt,
    ModelOpt,
    PrecisionOpt,
    PrivateOpt,
    RevisionOpt,
    SourceOpt,
    SourceRootOpt,
    ThreadsOpt,
    TimeoutOpt,
)
from afg_datasets.errors import AFGError
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
            # the message verbatim: a bracket or `:name:` in it is text, not markup or emoji
            message = escape(" ".join(str(err).split()))
            console.print(f"[bold red]error:[/] {message}", highlight=False, emoji=False)
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
        typer.Option(
            min=1,
            max=MAX_PROCESSES,
            help="Local task processes (default: on CPU, --threads; on cuda, one per GPU).",
        ),
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


@app.command()
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


@app.command()
def encode(
    directory: CorpusArg,
    out: Annotated[Path, typer.Option(help="Where the re-encoded corpus goes.")],
    encoder: EncoderOpt = None,
    groups: Annotated[int | None, typer.Option(min=1, max=MAX_GROUPS, help="NMF groups.")] = None,
    size: Annotated[
        int | None, typer.Option(min=1, max=MAX_GENOME_SIZE, help="Genome map size.")
    ] = None,
    nmf_iters: Annotated[
        int | None, typer.Option(min=1, max=MAX_ITERS, help="NMF iterations.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="NAME=VALUE: any setting of the chosen encoder (repeatable)."
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

    chosen = {"encoder": encoder, "groups": groups, "size": size, "nmf_iters": nmf_iters}
    genome = {key: value for key, value in chosen.items() if value is not None}
    genome |= setting_pairs(setting or [])
    printers.build_summary(encode_corpus(directory, out, genome, device, overwrite, progress))


@app.command()
def finalize(directory: Annotated[Path, typer.Argument(help="A build output directory.")]):
    """Write manifest, stats and card from every task's output (after a multi-rank build)."""
    from afg_datasets.building import finalize as finalize_corpus
    from afg_datasets.building.plan import output_lock, read_plan

    read_plan(directory)  # a clear error, and no lock file, where there is no build
    with output_lock(directory):
        result = finalize_corpus(directory)
    printers.build_summary(result)


@app.command()
def card(directory: CorpusArg):
    """Regenerate the dataset card (README.md) from manifest.json and stats.json."""
    from afg_datasets.publish.card import refresh_card

    typer.echo(f"wrote {refresh_card(directory)}")


@app.command()
def verify(directory: CorpusArg):
    """Check every file against the manifest, the schema against the card, splits and keys."""
    from afg_datasets.corpus.corpus import verify_corpus

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
    private: PrivateOpt = False,
    revision: RevisionOpt = None,
    dry_run: DryRunOpt = False,
    timeout: TimeoutOpt = 60.0,
    commit_files: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_COMMIT_FILES,
            help="Files per commit, resumable (default: one commit; 100 per commit above "
            "1,000 files or 1 GiB).",
        ),
    ] = None,
):
    """Publish a corpus to the Hugging Face Hub (token: HF_TOKEN or the saved login). A push
    in several commits resumes when re-run."""
    from afg_datasets.publish.hub import push as push_corpus

    plan = push_corpus(
        directory,
        repo_id,
        private=private,
        revision=revision,
        dry_run=dry_run,
        timeout=timeout,
        commit_files=commit_files,
    )
    printers.upload(plan, repo_id, dry_run)


@app.command("push-recognizer")
def push_recognizer(
    directory: Annotated[Path, typer.Argument(help="A saved recognizer (afg fit-recognizer).")],
    repo_id: Annotated[str, typer.Option(help="Hub model repo, NAMESPACE/NAME.")],
    private: PrivateOpt = False,
    revision: RevisionOpt = None,
    dry_run: DryRunOpt = False,
    timeout: TimeoutOpt = 60.0,
):
    """Publish a saved recognizer to a Hub model repo; load it with
    Recognizer.from_pretrained(REPO_ID)."""
    from afg_datasets.publish.hub import push_recognizer as push_model

    plan = push_model(directory, repo_id, private, revision, dry_run, timeout)
    printers.upload(plan, repo_id, dry_run)


for name, command in cli_research.COMMANDS.items():
    app.command(name)(command)


if __name__ == "__main__":
    app()
