"""The `afg` command line: parse -> config -> call. No pipeline logic lives here."""

from __future__ import annotations

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
console = Console(stderr=True)


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
    config: Annotated[
        str | None,
        typer.Argument(
            help="Builder YAML path, or the name of a config in builders/ (default: digits)."
        ),
    ] = None,
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
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int | None, typer.Option(help="Build seed (overrides the config).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a different corpus in --out.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Build an AFG corpus: source -> target model -> attacks -> genomes -> parquet + webdataset."""
    from afg_datasets.build import build_corpus
    from afg_datasets.config import load_config

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
        )
        _check_device(device)
        result = build_corpus(cfg, out, device=device, overwrite=overwrite, progress=progress)
    except AFGError as err:
        raise _fail(err) from None
    _print_summary(result)


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
