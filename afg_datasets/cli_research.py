"""The research wing of `afg`: fit-recognizer, bench, bench-*, afs (registered by `cli.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afg_datasets import printers
from afg_datasets.bounds import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_ITERS,
    MAX_REPEATS,
    MAX_SEEDS,
    MAX_SOURCES,
)
from afg_datasets.cli_options import (
    ConfigArg,
    CorpusArg,
    DeviceOpt,
    EncoderOpt,
    JsonOpt,
    ObjectiveChoice,
    UnseenOpt,
)
from afg_datasets.layout import AFS_JSON, AFS_PNG, BENCH_DIR, CARD_FILE
from afg_datasets.printers import console


def bench(
    directories: Annotated[
        list[Path],
        typer.Argument(help="A built corpus; several: corpora sharing records (afg encode)."),
    ],
    out: Annotated[Path | None, typer.Option(help="Output folder (default DIR/bench).")] = None,
    seeds: Annotated[
        int, typer.Option(min=1, max=MAX_SEEDS, help="Training seeds per method.")
    ] = 3,
    quick: Annotated[bool, typer.Option(help="1 seed, fewer epochs.")] = False,
    unseen: UnseenOpt = "all",
    adaptive: Annotated[
        bool, typer.Option(help="Add white-box PGD against each detector (slow).")
    ] = False,
):
    """Benchmark the AFG recognizer against raw pixels, Mahalanobis, LID and the target model;
    with several corpora, every genome side by side (paired intervals)."""
    from afg_datasets.corpus.corpus import Corpus, local_folder
    from afg_datasets.evaluation.bench import run_bench
    from afg_datasets.evaluation.report import results_table
    from afg_datasets.publish.card import refresh_card

    directory, show = directories[0], lambda step: console.print(f"[dim]{step}[/]")
    if out is None:  # the results (and the card's table) go into the corpus: a local folder
        directory = local_folder(directory, "afg bench without --out")
    if len(directories) > 1:
        from afg_datasets.evaluation.genomes import run_genome_bench

        written = out or directory / BENCH_DIR / "genomes"
        corpora = [Corpus.open(d) for d in directories]
        report = run_genome_bench(
            corpora, written, seeds, quick, unseen, adaptive, show, show_epochs=True
        )
        typer.echo(results_table(report))
        typer.echo(f"{report['seconds']:.0f}s; wrote {written}/results.json, results.md")
        return
    corpus = Corpus.open(directory)  # opened once: verified by the bench, read by the card
    report = run_bench(
        corpus,
        out,
        seeds=seeds,
        quick=quick,
        unseen=unseen,
        attack_systems=adaptive,
        progress=show,
        show_epochs=True,
    )
    if out is None:
        refresh_card(corpus)  # the card shows bench/results.md
    typer.echo(results_table(report))
    written = out or directory / BENCH_DIR
    typer.echo(f"{report['seconds']:.0f}s; wrote {written}/results.json, results.md, roc.png")


def bench_loader(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to read.")] = "train",
    repeats: Annotated[
        int,
        typer.Option(min=1, max=MAX_REPEATS, help="Passes per reader; the median is reported."),
    ] = 3,
    beside_build: Annotated[
        bool, typer.Option(help="Time the readers while a default build runs beside them.")
    ] = False,
    as_json: JsonOpt = False,
):
    """records/s and MB/s of dataloader, stream and load against datasets' own readers."""
    from afg_datasets.perf.loader_bench import bench_loaders

    results = bench_loaders(directory, split, repeats, beside=beside_build)
    printers.report(results, as_json, printers.loader_bench)


def bench_build(
    config: ConfigArg = None,
    what: Annotated[
        str, typer.Option(help="Comma-separated: kill, scaling, memory, source, device.")
    ] = "kill,scaling,memory",
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_SOURCES, help="Source images per build (x1).")
    ] = 256,
    sources_per_task: Annotated[
        int, typer.Option(min=1, max=MAX_SOURCES, help="Task size for the builds.")
    ] = 32,
    points: Annotated[int, typer.Option(min=1, max=MAX_REPEATS, help="Random kill points.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the kill points.")] = 0,
    source_images: Annotated[
        int,
        typer.Option(min=1, max=MAX_SOURCES // 10, help="source: N of the N vs 10N image folders."),
    ] = 2000,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="An existing folder where the temporary builds go (default: system temp).",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    preset: Annotated[
        str | None,
        typer.Option(help="device: full (one GPU, ~4 min) or tiny (default: full on CUDA)."),
    ] = None,
    as_json: JsonOpt = False,
):
    """SIGKILL-and-resume, weak scaling (1 vs 2 workers), peak RSS (x1 vs x4) of real builds;
    `source`: an imagenet build over N vs 10N JPEGs (memory, start-up, decode rate);
    `device`: the GPU path (precisions, stages vs the floor, groupviz, memory, projection)."""
    from afg_datasets.building.options import check_device
    from afg_datasets.config import load_config
    from afg_datasets.perf.build_bench import BenchSettings
    from afg_datasets.perf.build_bench import bench_build as run

    check_device(device)
    cfg = load_config(config).replace(sources_per_task=sources_per_task)
    names = [w.strip() for w in what.split(",") if w.strip()]
    settings = BenchSettings(limit, points, seed, source_images, device, preset)
    results = run(cfg, names, settings, work_dir)
    printers.report(results, as_json, printers.build_bench)


def bench_encoder(
    config: ConfigArg = None,
    encoder: EncoderOpt = None,
    samples: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="Source images to encode.")
    ] = 8,
    steps: Annotated[
        int | None, typer.Option(min=1, max=MAX_ITERS, help="groupviz steps (default: config).")
    ] = None,
    curve: Annotated[
        bool, typer.Option(help="groupviz: records/s and objective vs Lucid's 512 steps.")
    ] = False,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
):
    """Batched encoder vs one visualization / one NMF at a time: seconds, speedups, errors;
    with --curve, the render's cost and fidelity per (steps, lr)."""
    from afg_datasets.building.options import check_device
    from afg_datasets.config import load_config
    from afg_datasets.perf.encoder_bench import bench_encoder as run

    cfg = load_config(config, encoder=encoder).replace(genome__steps=steps)
    check_device(device)
    printers.report(run(cfg, samples, device, curve=curve), as_json, printers.encoder_bench)


def afs_command(
    directory: CorpusArg,
    split: Annotated[str, typer.Option(help="Split to measure.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the same-class clean pairs.")] = 0,
):
    """Adversarial feature separability: clean-vs-adversarial distance per attack and layer
    (raw activations and genome); writes afs.json, afs.png and refreshes the card."""
    from afg_datasets.corpus.corpus import Corpus, local_folder
    from afg_datasets.evaluation.afs import afs
    from afg_datasets.publish.card import refresh_card

    corpus = Corpus.open(local_folder(directory, "afg afs"))  # once, for both
    report = afs(corpus, split, seed)
    refresh_card(corpus)  # the card shows afs.png and its sentence
    printers.afs(report)
    typer.echo(f"wrote {directory / AFS_JSON}, {directory / AFS_PNG}, {CARD_FILE}")


def fit_recognizer(
    directory: CorpusArg,
    out: Annotated[Path, typer.Option(help="Folder to save the recognizer in.")],
    objective: Annotated[
        ObjectiveChoice, typer.Option(help="two_head (default) or the paper's mixed label.")
    ] = "two_head",
    seed: Annotated[int, typer.Option(help="Seed of weights and data order.")] = 0,
    epochs: Annotated[
        int, typer.Option(min=1, max=MAX_EPOCHS, help="At most this many epochs.")
    ] = 30,
):
    """Train the AFG recognizer on a corpus (early stopping on validation) and save it with
    its model card, ready for `afg push-recognizer`."""
    from afg_datasets.recognizer import Recognizer, TrainConfig

    cfg = TrainConfig(epochs=epochs, seed=seed)
    recognizer = Recognizer.fit(directory, objective, cfg, progress=True)
    path = recognizer.save(out)
    typer.echo(f"wrote {path} ({recognizer.info['epochs']} epochs)")


COMMANDS = {
    "fit-recognizer": fit_recognizer,
    "bench": bench,
    "bench-loader": bench_loader,
    "bench-build": bench_build,
    "bench-encoder": bench_encoder,
    "afs": afs_command,
}
