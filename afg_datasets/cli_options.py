"""Arguments and options several `afg` commands share (typer annotations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from afg_datasets.bounds import MAX_PROCESSES
from afg_datasets.genome import ENCODERS
from afg_datasets.sources import SOURCES

# The registries' names (their entries load on first use, so `--help` imports no torch).
EncoderChoice = Literal[tuple(ENCODERS)]
SourceChoice = Literal[tuple(SOURCES)]
# Fixed choices, spelled here so `--help` lists them without importing torch; a test keeps
# them equal to their modules (models.target.PRECISIONS, bench.UNSEEN, recognizer.OBJECTIVES).
PrecisionChoice = Literal["fp32", "bf16"]
UnseenChoice = Literal["all", "attack", "family", "none"]
ObjectiveChoice = Literal["two_head", "mixed"]

ConfigArg = Annotated[
    str | None,
    typer.Argument(help="Builder YAML path or name of a builder in builders/ (default: digits)."),
]
CorpusArg = Annotated[Path, typer.Argument(help="A built corpus directory.")]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
SourceOpt = Annotated[SourceChoice | None, typer.Option(help="Source kind (default: config).")]
SourceRootOpt = Annotated[
    str | None,
    typer.Option(
        help="Source data location: a directory, a dataset dir / repo id (hf), or a shard "
        "directory / brace pattern (wds)."
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Target model: a registry name (small_cnn, resnet18, ...) or module:callable."
    ),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(help="Target-model weights: a state dict (.pt) or .safetensors file."),
]
AttacksOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated attack names (config parameters are kept for those it names)."
    ),
]
EncoderOpt = Annotated[EncoderChoice | None, typer.Option(help="Genome encoder (default: config).")]
PrecisionOpt = Annotated[
    PrecisionChoice | None,
    typer.Option(help="Target-model forward passes: fp32 (default, reproducible) or bf16."),
]
UnseenOpt = Annotated[
    UnseenChoice,
    typer.Option(help="Held-out settings: leave one attack out, one norm family out, all, none."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_PROCESSES,
        help="Local task processes (default: on CPU, --threads; on cuda, one per GPU).",
    ),
]
LoaderWorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=MAX_PROCESSES,
        help="Image-decoding processes per build process (default: CPUs / 2, max 8).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_PROCESSES,
        help="CPU cores the build uses: on CPU, task processes of one torch thread each, so "
        "the bytes never depend on it (default: OMP_NUM_THREADS, else CPUs / builds on the node).",
    ),
]
PrivateOpt = Annotated[bool, typer.Option(help="Create the repo as private.")]
RevisionOpt = Annotated[str | None, typer.Option(help="Branch to push to.")]
DryRunOpt = Annotated[bool, typer.Option(help="Validate and list the upload only.")]
TimeoutOpt = Annotated[
    float,
    typer.Option(min=0.1, max=86_400, help="Seconds a Hub request may wait without progress."),
]
