"""Output formats: registry name -> format (its folder and shard names, a writer with one
`write(batch)`, `rows(path)` for verify). A build writes the formats its config lists; the
plan, the task, verify and the card loop over them. Adding a format: its module plus its line
here. Parquet is always written: the card's configs, `load_dataset` and croissant read it."""

from __future__ import annotations

from afg_datasets.formats.base import (
    OutputFormat,
    ShardFile,
    ShardWriter,
    shard_name,
    split_of_shard,
    task_of_shard,
)
from afg_datasets.formats.parquet import PARQUET
from afg_datasets.formats.webdataset import WEBDATASET
from afg_datasets.registry import Registry

FORMATS: Registry[OutputFormat] = Registry(
    "format", {PARQUET.name: PARQUET, WEBDATASET.name: WEBDATASET}
)
DEFAULT_FORMATS = tuple(FORMATS)
TABLE_FORMAT = PARQUET  # the one every config, column reader and croissant record set reads
FORMAT_DIRS = tuple(f.folder for f in FORMATS.values())


def format_of(relative: str) -> OutputFormat | None:
    """The format a corpus-relative path is a shard of, if any."""
    return next((f for f in FORMATS.values() if f.owns(relative)), None)


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "FORMAT_DIRS",
    "TABLE_FORMAT",
    "OutputFormat",
    "ShardFile",
    "ShardWriter",
    "format_of",
    "shard_name",
    "split_of_shard",
    "task_of_shard",
]
