"""What every output format is: its folder and shard names, a writer with the `.partial`
lifecycle, a row count for verify. A shard gets its final name only once it is complete;
`.partial` files are never read by the standard readers' patterns and are removed before their
task runs again."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from datasets import Features

from afg_datasets.errors import CorpusError
from afg_datasets.files import partial_path
from afg_datasets.records import RecordBatch

SHARD_NAME = re.compile(r"(?P<split>[a-z]+)-(?P<task>\d{5})-of-(?P<tasks>\d{5})\.\w+")


def shard_name(split: str, task_id: int, num_tasks: int, suffix: str) -> str:
    return f"{split}-{task_id:05d}-of-{num_tasks:05d}{suffix}"


def split_of_shard(relative: str) -> str:
    """The split a shard path belongs to (its file name starts with `<split>-`)."""
    return relative.rsplit("/", 1)[-1].split("-", 1)[0]


def shard_tasks(relative: str) -> tuple[int, int]:
    """(the task that wrote a shard, the build's number of tasks), from its name
    `<split>-TTTTT-of-NNNNN.<suffix>`; a CorpusError for any other name."""
    match = SHARD_NAME.fullmatch(relative.rsplit("/", 1)[-1])
    if match is None:
        raise CorpusError(f"{relative}: not a shard name (<split>-TTTTT-of-NNNNN.<suffix>)")
    return int(match["task"]), int(match["tasks"])


def task_of_shard(relative: str) -> int:
    """The task that wrote a shard."""
    return shard_tasks(relative)[0]


@dataclass(frozen=True)
class ShardFile:
    path: Path
    rows: int


class ShardWriter:
    """One shard: opened as `<path>.partial` on the first write, renamed by `close`, deleted by
    `abort`. As a context manager, an exception inside aborts it."""

    def __init__(self, path: Path, features: Features):
        self.path = path
        self.features = features
        self.rows = 0
        self._open_now = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self.abort()

    def write(self, batch: RecordBatch) -> None:
        """Append the records of one batch (one variant of a batch of sources)."""
        self._ensure_open()
        self._write(batch)
        self.rows += len(batch.labels)

    def close(self) -> ShardFile:
        """Finish the shard and give it its final name."""
        self._ensure_open()
        self._close()
        os.replace(partial_path(self.path), self.path)
        return ShardFile(self.path, self.rows)

    def abort(self) -> None:
        """Drop what this writer wrote (a task failed). Closing may fail again (the disk that
        filled up is still full); the temporary file goes in any case."""
        try:
            if self._open_now:
                self._close()
        except Exception:  # noqa: BLE001, S110 - the file is discarded; its close error is moot
            pass
        finally:
            partial_path(self.path).unlink(missing_ok=True)

    def _ensure_open(self) -> None:
        if not self._open_now:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open(partial_path(self.path))
            self._open_now = True

    def _open(self, path: Path) -> None:
        raise NotImplementedError

    def _write(self, batch: RecordBatch) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class OutputFormat:
    """One output format. Shards live at `<folder>/<attack or split>/<split>-TTTTT-of-NNNNN
    <suffix>`: one per attack and split (`per_attack`) or one per split for all attacks."""

    name: ClassVar[str]
    folder: ClassVar[str]
    suffix: ClassVar[str]
    media_type: ClassVar[str]  # for croissant's FileObjects
    per_attack: ClassVar[bool]
    writer: ClassVar[type[ShardWriter]]  # writer(path, features)

    def shard_path(self, out: Path, attack: str, split: str, task_id: int, num_tasks: int):
        group = attack if self.per_attack else split
        return out / self.folder / group / shard_name(split, task_id, num_tasks, self.suffix)

    def attack_of(self, relative: str) -> str:
        """The variant folder a per-attack shard lies in (`<folder>/<attack or clean>/...`)."""
        return relative.split("/")[1]

    def owns(self, relative: str) -> bool:
        """Whether a corpus-relative path is one of this format's shards."""
        return relative.startswith(f"{self.folder}/") and relative.endswith(self.suffix)

    def rows(self, path: Path) -> int:
        """The records in a shard (a CorpusError when it cannot be read as this format)."""
        raise NotImplementedError

    def column_bytes(self, path: Path) -> dict[str, int]:
        """Stored bytes of a shard per record column (tar: per member suffix), headers and
        footers left out."""
        raise NotImplementedError
