"""`afg encode`: a corpus with the same records, keys, splits and target model as its parent and
new genome columns, computed from the stored PNGs (the quantized images the genome must
describe); no attack runs. Task by task like a build: resumable, byte-identical when repeated,
and with the parent's own encoder settings it reproduces the parent's genome columns.

A task's batches are its parquet row groups: a build writes each batch as one row group
(unless over ROW_GROUP_BYTES: a corpus whose batches were split is refused)."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from afg_datasets.building.context import (
    BuildContext,
    Setup,
    bind,
    load_saved,
    ready_encoder,
    save_encoder_state,
)
from afg_datasets.building.finalize import BuildResult, finalize
from afg_datasets.building.options import check_device
from afg_datasets.building.plan import (
    Task,
    check_output,
    clear_task,
    derive_seed,
    output_lock,
    plan_document,
    prepare_output,
)
from afg_datasets.building.stats import AttackTally, StageTimer
from afg_datasets.building.task import (
    TaskShards,
    predict_and_encode,
    run_once,
    task_marker,
)
from afg_datasets.building.threads import numeric_threads
from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import CorpusError, OutputDirError, first_line
from afg_datasets.files import atomic_directory
from afg_datasets.formats import TABLE_FORMAT, split_of_shard
from afg_datasets.formats.base import shard_tasks
from afg_datasets.images import decode_png
from afg_datasets.layout import (
    INFO_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    MODEL_FILE,
    SETUP_FILE,
    SPLITS,
    sha256_file,
    write_json,
)
from afg_datasets.models import model_input
from afg_datasets.records import CLEAN, STORED_COLUMNS, RecordBatch
from afg_datasets.sources.base import Source


def encode_corpus(
    parent: Corpus,
    out: str | Path,
    genome: Mapping[str, Any],
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Re-encode `parent` (verified first) into `out` with the genome
    settings `genome` (`encoder` and its options; unset ones keep the parent's), computing on
    one thread."""
    with numeric_threads():
        return _encode(parent, Path(out), genome, device, overwrite, progress)


def _encode(
    corpus: Corpus,
    out: Path,
    genome: Mapping[str, Any],
    device: str,
    overwrite: bool,
    progress: bool,
) -> BuildResult:
    check_device(device)
    start = time.perf_counter()
    parent = corpus.root
    if out.resolve() == parent.resolve():
        raise OutputDirError(f"--out {str(out)!r} is the corpus itself; choose another directory")
    corpus.verify()
    manifest = corpus.manifest
    cfg = BuildConfig.from_manifest(corpus.config)
    cfg = cfg.replace(**{f"genome__{key}": value for key, value in genome.items()})
    shards = task_shards(corpus)
    tasks = [Task(t, 0, 0, derive_seed(cfg.seed, "task", t)) for t in range(manifest["tasks"])]
    ctx = corpus_context(parent, manifest, cfg, out, device, progress)
    check_output(out, cfg, overwrite, resume=False)
    plan = {
        **plan_document(cfg, tasks, _facts(manifest, ctx)),
        "parent": {
            "name": manifest["name"],
            "config_hash": manifest["config_hash"],
            "manifest_sha256": sha256_file(parent / MANIFEST_FILE),  # its identity
        },
    }
    with output_lock(out):
        prepare_output(out, cfg, plan, overwrite, resume=False)
        _copy_model(ctx, parent)
        ready_encoder(ctx, _train_images(shards, stored_shape(ctx)), out / MODEL_DIR)
        save_encoder_state(ctx, out / MODEL_DIR)
    ran = [
        run_once(out, task, lambda task=task: _run_task(ctx, task, shards[task.id], len(tasks)))
        for task in tasks
    ]
    with output_lock(out):  # the command's wall clock when it ran every task itself
        return finalize(out, time.perf_counter() - start if all(ran) else None)


def corpus_context(
    parent: Path, manifest: dict, cfg: BuildConfig, out: Path, device: str, progress: bool
) -> BuildContext:
    """The build context of the re-encoding: the parent's model, its layers, the new encoder;
    the source is the corpus's stored images (no items: they come from the shards)."""
    model, info = load_saved(cfg, parent / MODEL_DIR, torch.device(device))
    facts = manifest["source"]
    stored = Source(
        facts["name"],
        np.zeros(0, np.int64),
        tuple(facts["class_names"]),
        (),
        facts["license"],
        facts["citation"],
        None,
        info.in_channels,
        info.image_size,
    )
    split_of = np.zeros(0, dtype="<U10")
    ctx = bind(
        cfg, out, torch.device(device), stored, model, info, progress, Setup(), True, split_of
    )
    if [layer["name"] for layer in manifest["layers"]] != list(ctx.layers):
        raise CorpusError(f"{parent}: its layers differ from its model's; it cannot be re-encoded")
    return ctx


def _facts(manifest: dict, ctx: BuildContext) -> dict[str, Any]:
    """plan.json's corpus facts: the parent's, with the new schema."""
    facts = ctx.corpus_facts()
    keep = ("seeds", "source", "layers", "attacks", "splits")
    return {**facts, **{key: manifest[key] for key in keep}}


def task_shards(corpus: Corpus) -> dict[int, dict[str, dict[str, Path]]]:
    """Task -> split -> attack (clean first, then the parent's order) -> its parquet shard. The
    number of tasks is the manifest's; every shard name must agree with it."""
    parent, tasks = corpus.root, corpus.manifest["tasks"]
    variants = [CLEAN, *corpus.attacks]
    shards: dict[int, dict[str, dict[str, Path]]] = defaultdict(lambda: defaultdict(dict))
    for entry in corpus.files(TABLE_FORMAT.name):
        path = entry["path"]
        attack, split = TABLE_FORMAT.attack_of(path), split_of_shard(path)
        task, named = shard_tasks(path)
        if attack not in variants or split not in SPLITS or named != tasks or task >= tasks:
            raise CorpusError(
                f"{parent}: {path} is not a shard of its attacks, splits and {tasks} tasks"
            )
        shards[task][split][attack] = parent / path
    for splits in shards.values():
        for split, by_attack in splits.items():
            splits[split] = {a: by_attack[a] for a in variants if a in by_attack}
    return shards


def _copy_model(ctx: BuildContext, parent: Path) -> None:
    """The parent's target model, as its files (the same bytes, the same sha256)."""
    out = ctx.out

    def copy(tmp: Path) -> None:
        tmp.mkdir()
        for name in (INFO_FILE, MODEL_FILE):  # an encoder's state is the new encoder's own
            shutil.copyfile(parent / MODEL_DIR / name, tmp / name)

    if not (out / MODEL_DIR).is_dir():
        atomic_directory(out / MODEL_DIR, copy)
    if not (out / SETUP_FILE).is_file():
        (out / SETUP_FILE).parent.mkdir(exist_ok=True)
        write_json(out / SETUP_FILE, ctx.setup_record())


def stored_shape(ctx: BuildContext) -> tuple[int, int, int]:
    """[H, W, C] of every image the corpus stores (its model's input)."""
    return ctx.model_info.image_size, ctx.model_info.image_size, ctx.model_info.in_channels


def _decode(path: Path, pictures: list[dict], shape: tuple[int, int, int]) -> np.ndarray:
    """A row group's stored PNGs through the one image converter, each of the corpus's shape;
    a CorpusError naming the shard otherwise (never a genome of 16-bit levels)."""
    try:
        return np.stack([decode_png(picture["bytes"], shape) for picture in pictures])
    except (ValueError, OSError) as err:
        raise CorpusError(f"{path}: {first_line(err)}") from None


def _train_images(
    shards: Mapping[int, Mapping[str, Mapping[str, Path]]], shape: tuple[int, int, int]
) -> Iterator[np.ndarray]:
    """The parent's clean train images in source order (task by task, row group by row
    group), decoded lazily: what a stateful encoder is fitted on, as in a build."""
    for task in sorted(shards):
        path = shards[task].get("train", {}).get(CLEAN)
        if path is not None:
            shard = pq.ParquetFile(path)
            for index in range(shard.metadata.num_row_groups):
                pictures = shard.read_row_group(index, columns=["image"]).column("image")
                yield _decode(path, pictures.to_pylist(), shape)


def _run_task(
    ctx: BuildContext, task: Task, shards: Mapping[str, Mapping[str, Path]], num_tasks: int
) -> dict[str, Any]:
    """Re-encode one task's records, batch by batch as the build wrote them; its marker."""
    clear_task(ctx.out, task, num_tasks, ctx.variant_names, ctx.formats)
    started, timer = time.time(), StageTimer()
    tallies: dict[str, AttackTally] = defaultdict(AttackTally)
    with TaskShards(ctx, task.id, num_tasks) as out:
        for split in SPLITS:
            by_attack = shards.get(split, {})
            for b, variants in enumerate(stored_batches(by_attack, timer, stored_shape(ctx))):
                seed = derive_seed(task.seed, "genome", split, b)
                eligible = variants[0].preds == variants[0].labels  # as the build counts
                for batch in variants:
                    x = model_input(batch.images, ctx.device)
                    what = f"{batch.attack} records of task {task.id}"
                    _, batch.genome = predict_and_encode(ctx, x, seed, timer, what)
                    tallies[batch.attack].add(batch, eligible)
                    with timer("write"):
                        out.write(batch, split)
        with timer("write"):
            closed = out.close()
    return task_marker(ctx, task.id, started, timer, tallies, closed)


def stored_batches(
    by_attack: Mapping[str, Path], timer: StageTimer, shape: tuple[int, int, int]
) -> Iterator[list[RecordBatch]]:
    """Per batch of the build (one row group of each variant's shard), its variants' records
    with the stored images decoded; clean first."""
    if not by_attack:
        return
    files = {attack: pq.ParquetFile(path) for attack, path in by_attack.items()}
    groups = {f.metadata.num_row_groups for f in files.values()}
    for index in range(max(groups)):
        with timer("decode"):
            tables = {
                a: f.read_row_group(index, columns=list(STORED_COLUMNS)) for a, f in files.items()
            }
            sources = {tuple(t.column("source_id").to_pylist()) for t in tables.values()}
            if len(groups) != 1 or len(sources) != 1:
                path = next(iter(by_attack.values()))
                raise CorpusError(
                    f"{path.parent.parent}: the variants' row groups of {path.name} hold "
                    "different sources (batches split across row groups); afg encode cannot "
                    "recover its batches"
                )
            variants = [_records(a, t, by_attack[a], shape) for a, t in tables.items()]
        yield variants


def _records(attack: str, table, path: Path, shape: tuple[int, int, int]) -> RecordBatch:
    """One row group as the batch of records the build wrote (genome still to compute)."""
    columns = {name: table.column(name) for name in STORED_COLUMNS}
    images = _decode(path, columns["image"].to_pylist(), shape)
    return RecordBatch(
        columns["source_id"].to_pylist(),
        attack,
        columns["attack_params"][0].as_py(),
        images,
        columns["label"].to_numpy(),
        columns["pred"].to_numpy(),
        columns["linf"].to_numpy(),
        columns["l2"].to_numpy(),
        {},
    )
