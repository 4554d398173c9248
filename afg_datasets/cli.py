"""The `afg` command line: parse -> config -> call. No pipeline logic lives here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from afg_datasets.errors import AFGError

app = typer.Typer(
    help="Build, publish and consume Adversarial Feature Genome (AFG) corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True, soft_wrap=True)

# Arguments and options several commands share.
ConfigArg = Annotated[
    str | None,
    typer.Argument(help="Builder YAML path or name of a builder in builders/ (default: digits)."),
]
CorpusArg = Annotated[Path, typer.Argument(help="A built corpus directory.")]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(err: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
    return typer.Exit(code=2)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
):
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command("build-shards")
def build_shards(
    config: ConfigArg = None,
    out: Annotated[Path, typer.Option(help="Output corpus directory.")] = Path("afg"),
    limit: Annotated[int | None, typer.Option(help="Use only the first N source images.")] = None,
    source_root: Annotated[
        str | None,
        typer.Option(help="Source data location (directory, or dataset dir / repo id for hf)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Target model: a registry name (small_cnn, resnet18, ...) or module:callable."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Target-model weights: a state dict (.pt) or .safetensors file."),
    ] = None,
    attacks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated attack names (config parameters are kept for those it names)."
        ),
    ] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Genome encoder: groupmap or groupviz (default: config).")
    ] = None,
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
    executor: Annotated[str, typer.Option(help="How tasks run: local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (e.g. auto); default: start one.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Build an AFG corpus: source -> target model -> attacks -> genomes -> parquet + webdataset.

    Re-running on the same --out resumes; with several ranks, `afg finalize` completes it."""
    from afg_datasets.build import RunOptions, build_corpus
    from afg_datasets.config import load_config
    from afg_datasets.executors import EXECUTORS, default_workers, rank_device, resolve_ranks

    try:
        cfg = load_config(config)
        if attacks is not None:
            names = [a.strip() for a in attacks.split(",") if a.strip()]
            cfg = cfg.replace(attacks={n: cfg.attacks.get(n, {}) for n in names})
        cfg = cfg.replace(
            limit=limit,
            seed=seed,
            source__root=source_root,
            model__architecture=model,
            model__checkpoint=checkpoint,
            genome__encoder=encoder,
        )
        rank, world_size, local_rank = resolve_ranks(rank, world_size)
        device = rank_device(device, local_rank)
        _check_device(device)
        EXECUTORS[executor]
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
        )
        result = build_corpus(cfg, out, options)
    except AFGError as err:
        raise _fail(err) from None
    if not result.manifest:
        console.print(
            f"rank {rank} of {world_size}: ran {len(result.tasks_run)} task(s); other ranks are "
            f"still building. When all have finished: afg finalize {out}"
        )
        return
    _print_summary(result)


@app.command()
def finalize(directory: Annotated[Path, typer.Argument(help="A build output directory.")]):
    """Write manifest, stats and card from every task's output (after a multi-rank build)."""
    from afg_datasets.finalize import finalize as finalize_corpus
    from afg_datasets.plan import output_lock, read_plan

    try:
        read_plan(directory)  # a clear error, and no lock file, where there is no build
        with output_lock(directory):
            result = finalize_corpus(directory)
    except AFGError as err:
        raise _fail(err) from None
    _print_summary(result)


@app.command()
def card(directory: CorpusArg):
    """Regenerate the dataset card (README.md) from manifest.json and stats.json."""
    from afg_datasets.card import write_card
    from afg_datasets.verify import load_manifest

    try:
        manifest = load_manifest(directory)
        stats = json.loads((directory / "stats.json").read_text())
        path = write_card(directory, manifest, stats)
    except (AFGError, OSError) as err:
        raise _fail(err) from None
    typer.echo(f"wrote {path}")


@app.command()
def verify(directory: CorpusArg):
    """Check every file against the manifest, the schema against the card, splits and keys."""
    from afg_datasets.verify import verify_corpus

    try:
        problems = verify_corpus(directory)
    except AFGError as err:
        raise _fail(err) from None
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
):
    """Publish a corpus to the Hugging Face Hub (token: HF_TOKEN or the saved login)."""
    from afg_datasets.hub import push as push_corpus

    try:
        plan = push_corpus(directory, repo_id, private=private, revision=revision, dry_run=dry_run)
    except AFGError as err:
        raise _fail(err) from None
    total = sum(f.bytes for f in plan)
    if dry_run:
        for item in plan:
            typer.echo(f"{item.bytes:>12,d}  {item.path}")
        typer.echo(f"dry run: {len(plan)} files, {total / 1e6:.1f} MB would go to {repo_id}")
    else:
        typer.echo(f"pushed {len(plan)} files ({total / 1e6:.1f} MB) to {repo_id}")


@app.command()
def bench(
    directory: CorpusArg,
    out: Annotated[Path | None, typer.Option(help="Output folder (default DIR/bench).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Training seeds per method.")] = 3,
    quick: Annotated[bool, typer.Option(help="1 seed, fewer epochs.")] = False,
):
    """Benchmark the AFG recognizer against raw pixels, Mahalanobis, LID and the target model."""
    from afg_datasets.bench import results_table, run_bench
    from afg_datasets.card import write_card
    from afg_datasets.verify import load_manifest

    try:
        report = run_bench(
            directory,
            out,
            seeds=seeds,
            quick=quick,
            progress=lambda step: console.print(f"[dim]{step}[/]"),
        )
        manifest = load_manifest(directory)
        stats = json.loads((directory / "stats.json").read_text())
        if out is None:
            write_card(directory, manifest, stats)  # the card shows bench/results.md
    except AFGError as err:
        raise _fail(err) from None
    typer.echo(results_table(report))
    typer.echo(
        f"{report['seconds']:.0f}s; wrote {(out or directory / 'bench')}/"
        "results.json, results.md, roc.png"
    )


@app.command("bench-loader")
def bench_loader(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to read.")] = "train",
    repeats: Annotated[int, typer.Option(help="Passes per reader; the median is reported.")] = 3,
    as_json: JsonOpt = False,
):
    """records/s and MB/s of `load`, `stream` and a raw read of the same files."""
    from afg_datasets.benchmarks import bench_loaders

    try:
        results = bench_loaders(directory, split, repeats)
    except AFGError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    table = Table("reader", "records/s", "MB/s", "seconds", "of raw ceiling")
    for name, r in results["readers"].items():
        table.add_row(
            name,
            f"{r['records_per_s']:,.0f}",
            f"{r['mb_per_s']:,.1f}",
            f"{r['seconds']:.3f}",
            f"{r['fraction_of_raw']:.2f}",
        )
    Console().print(table)


@app.command("bench-build")
def bench_build(
    config: ConfigArg = None,
    what: Annotated[str, typer.Option(help="Comma-separated: kill, scaling, memory.")] = (
        "kill,scaling,memory"
    ),
    limit: Annotated[int, typer.Option(min=1, help="Source images per build (x1).")] = 256,
    sources_per_task: Annotated[int, typer.Option(min=1, help="Task size for the builds.")] = 32,
    points: Annotated[int, typer.Option(min=1, help="Random kill points.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the kill points.")] = 0,
    work_dir: Annotated[
        Path | None, typer.Option(help="Where the temporary builds go (default: system temp).")
    ] = None,
    as_json: JsonOpt = False,
):
    """SIGKILL-and-resume, weak scaling (1 vs 2 workers), peak RSS (x1 vs x4) of real builds."""
    from afg_datasets.build_bench import bench_build as run
    from afg_datasets.config import load_config

    try:
        cfg = load_config(config).replace(sources_per_task=sources_per_task)
        names = [w.strip() for w in what.split(",") if w.strip()]
        results = run(cfg, names, limit, points, seed, work_dir)
    except AFGError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    out = Console()
    if "kill" in results:
        k = results["kill"]
        out.print(
            f"kill/resume: {k['identical']}/{k['points']} resumed builds identical to the "
            f"reference ({k['killed_mid_build']} killed mid-build, {k['tasks']} tasks)"
        )
    if "scaling" in results:
        s = results["scaling"]
        out.print(
            f"weak scaling: 1 worker {s['single_worker_records_per_s']} records/s; 2 workers "
            f"{s['two_workers_records_per_s_each']} each = {s['fraction_of_single']} of single"
        )
    if "memory" in results:
        m = results["memory"]
        out.print(
            f"peak RSS: {m['x1']['records']} records {m['x1']['peak_rss_mb']} MB, "
            f"{m['x4']['records']} records {m['x4']['peak_rss_mb']} MB (ratio {m['ratio']})"
        )


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
    from afg_datasets.config import load_config
    from afg_datasets.encoder_bench import bench_encoder as run

    try:
        cfg = load_config(config).replace(genome__encoder=encoder, genome__steps=steps)
        _check_device(device)
        results = run(cfg, samples, device)
    except AFGError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps(results))
        return
    table = Table("measure", "value")
    for section in ("nmf", "groupviz"):
        for key, value in results.get(section, {}).items():
            table.add_row(f"{section}.{key}", str(value))
    Console().print(table)


@app.command("afs")
def afs_command(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to measure.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the same-class clean pairs.")] = 0,
):
    """Adversarial feature separability: clean-vs-adversarial distance per attack and layer
    (raw activations and genome); writes afs.json, afs.png and refreshes the card."""
    from afg_datasets.analysis import afs

    try:
        report = afs(directory, split, seed)
    except AFGError as err:
        raise _fail(err) from None
    table = Table("representation", "attack", *report["layers"], "depth rho")
    for kind, curves in report["curves"].items():
        for attack, curve in curves.items():
            rho = report["depth_correlation"][kind][attack]
            table.add_row(kind, attack, *(f"{p['median']:.3f}" for p in curve), f"{rho:.2f}")
    Console().print(table)
    typer.echo(report["summary"])
    typer.echo(f"wrote {directory / 'afs.json'}, {directory / 'afs.png'}, README.md")


@app.command()
def show(
    directory: CorpusArg,
    key: Annotated[str, typer.Argument(help="Record key, e.g. digits-00004-fgsm.")],
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: ./show-KEY.png).")
    ] = None,
):
    """One figure: clean image, adversarial image, amplified perturbation, both genomes."""
    from afg_datasets.analysis import show as show_record

    try:
        path = show_record(directory, key, out)
    except AFGError as err:
        raise _fail(err) from None
    typer.echo(f"wrote {path}")


def _check_device(device: str) -> None:
    import torch

    from afg_datasets.errors import ConfigError

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown --device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported --device {device!r}; use cpu, cuda or cuda:N")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r} requested but CUDA is not available; use cpu")


def _print_summary(result) -> None:
    stats, manifest = result.stats, result.manifest
    out = Console()
    out.print(f"[bold]AFG corpus[/] {result.out}  (config hash {manifest['config_hash']})")
    out.print(
        f"records {stats['records']} in {stats['wall_seconds']:.1f}s "
        f"({stats['records_per_s']:.1f}/s), peak RSS {stats['peak_rss_mb']:.0f} MB"
    )
    model = stats["target_model"]
    origin = f"trained in {model['train_seconds']:.1f}s"
    if model["cached"]:
        origin = "cached"
    elif model["weights"] != "trained":
        origin = f"weights: {model['weights']}"
    out.print(f"target model test accuracy {model['test_accuracy']:.4f} ({origin})")
    table = Table("attack", "success rate", "mean linf", "mean l2", "records")
    for name, s in stats["attacks"].items():
        table.add_row(
            name,
            f"{s['success_rate']:.3f}",
            f"{s['mean_linf']:.4f}",
            f"{s['mean_l2']:.4f}",
            str(s["records"]),
        )
    out.print(table)
    stages = Table("stage", "seconds", "records/s")
    for name, s in stats["stages"].items():
        stages.add_row(name, f"{s['seconds']:.2f}", str(s["records_per_s"]))
    out.print(stages)
    splits = ", ".join(f"{k} {v['records']}" for k, v in manifest["splits"].items())
    out.print(f"splits: {splits}")
    out.print(f'load it: datasets.load_dataset("{result.out}")')


if __name__ == "__main__":
    app()
