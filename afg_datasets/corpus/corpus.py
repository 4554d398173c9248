"""A built corpus, opened once per command: the read-side counterpart of `BuildContext`.

`Corpus.open(path or Hub repo)` reads the manifest (format checked) once; `files` is the one
loop over the manifest's files and `configs` the one config rule (the card, croissant and the
loaders use both); `verify` runs once per object; `table` and `find` read records. Every
consumer takes a `Corpus` (`Corpus.of` accepts a path too). Nothing here imports the build.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from afg_datasets.checks import hub_repo_id
from afg_datasets.corpus import verify
from afg_datasets.corpus.columns import find_row, read_table
from afg_datasets.corpus.facts import CorpusFacts
from afg_datasets.corpus.manifest import check_entry, load_manifest
from afg_datasets.documents import read_text
from afg_datasets.errors import ConfigError, CorpusError, ImageError
from afg_datasets.formats import FORMATS, TABLE_FORMAT, format_of, split_of_shard
from afg_datasets.images import decode_png
from afg_datasets.layout import (
    AFS_JSON,
    BENCH_DIR,
    BENCH_RESULTS,
    BENCH_TABLE,
    CARD_FILE,
    MODEL_DIR,
    SPLITS,
    STATS_FILE,
    format_major,
    read_json,
)
from afg_datasets.records import CLEAN

if TYPE_CHECKING:
    from afg_datasets.genome import GenomeEncoder

DEFAULT_CONFIG = "all"  # the card's default config: every attack folder


@dataclass(frozen=True)
class Corpus:
    """A corpus whose manifest this package reads. Frozen: what a command learns about it is
    computed once (`functools.cached_property`)."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path_or_repo: str | os.PathLike, revision: str | None = None) -> Corpus:
        """A local corpus folder, or a Hub dataset repo (its manifest's files fetched into a
        plain folder of the AFG cache, `remote.fetch`: verified file by file as a local one)."""
        local = Path(path_or_repo)
        if not local.is_dir() and _repo_id(str(path_or_repo)):
            from afg_datasets.corpus.remote import fetch

            local = fetch(str(path_or_repo), revision)
        return cls(local, load_manifest(local))  # a missing folder: one error naming it

    @classmethod
    def of(cls, corpus: Corpus | str | os.PathLike) -> Corpus:
        """`corpus` itself, or the corpus in that folder or Hub repo (the public entry points,
        `load`, `dataloader`, `stream`, `Recognizer.fit`, take any); anything else is one
        error saying it is neither."""
        if isinstance(corpus, Corpus):
            return corpus
        if not Path(corpus).is_dir():
            hub_repo_id(str(corpus), "corpus (no such folder; nor a Hub repo)")
        return cls.open(corpus)

    # -- facts from the manifest -------------------------------------------------------------
    @functools.cached_property
    def facts(self) -> CorpusFacts:
        """The manifest's facts, parsed once (what every consumer reads)."""
        return CorpusFacts.parse(self.manifest)

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def attacks(self) -> list[str]:
        return self.facts.attacks

    @property
    def layers(self) -> list[str]:
        return self.facts.layer_names

    @property
    def encoder(self) -> str:
        """The genome encoder's registry name (`genome.ENCODERS`)."""
        return self.facts.encoder

    @property
    def genome_columns(self) -> list[str]:
        return self.facts.genome_columns

    @property
    def config(self) -> Mapping[str, Any]:
        """The build config as recorded (a plain mapping: reading it imports no build code)."""
        return self.facts.config

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def bench_dir(self) -> Path:
        return self.root / BENCH_DIR

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[H, W, C] of every image the corpus stores (its model's input)."""
        return self.facts.image_shape

    def image(self, record: dict[str, Any]) -> np.ndarray:
        """A record's stored image, uint8 [H, W, C] of this corpus's shape; anything else is
        one CorpusError naming the record."""
        try:
            return decode_png(record["image"]["bytes"], self.image_shape)
        except ImageError as err:
            raise CorpusError(
                f"corpus {str(self.root)!r}: record {record['key']!r}: {err}"
            ) from None

    def records(self, split: str) -> int:
        return self.facts.count(split)

    def genome_encoder(self, model=None) -> GenomeEncoder:
        """The encoder the corpus was built with (a stateful one loads its state from the
        corpus's model folder): `CorpusFacts.genome_encoder`."""
        return self.facts.genome_encoder(model, self.model_dir)

    def target_model(self, device: str = "cpu"):
        """The stored target model (torch; imported on first use)."""
        from afg_datasets.models.storage import load_target_model

        return load_target_model(self.root, device)

    # -- files later analyses derive from it ------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """stats.json: the build's figures (checked against its shape)."""
        return read_json(self.root / STATS_FILE, shape="stats")

    def bench_report(self) -> dict[str, Any] | None:
        """bench/results.json (`afg bench`), when there is one (an object: anything else is
        not a report and reads as none)."""
        path = self.bench_dir / BENCH_RESULTS
        report = read_json(path) if path.is_file() else None
        return report if isinstance(report, dict) else None

    def bench_table(self) -> str | None:
        """bench/results.md, the bench's table as text, when there is one."""
        path = self.bench_dir / BENCH_TABLE
        return read_text(path, CorpusError) if path.is_file() else None

    def afs_summary(self) -> str | None:
        """The sentence `afg afs` wrote of its figure, when it did."""
        path = self.root / AFS_JSON
        document = read_json(path) if path.is_file() else None
        return str(document.get("summary", "")) if isinstance(document, dict) else None

    # -- files ------------------------------------------------------------------------------
    @property
    def configs(self) -> dict[str, list[str]]:
        """The one config rule: config -> its attack folders of table shards. `all` (every
        folder), then each attack with the clean records."""
        return {DEFAULT_CONFIG: ["*"], **{a: [CLEAN, a] for a in self.attacks}}

    def files(
        self, format: str | None = None, split: str | None = None, config: str | None = None
    ) -> list[dict[str, Any]]:
        """The manifest's file entries in its order (shards sorted by path, then the model's
        files): every file, or the shards of one format (`FORMATS` name), split and config (a
        config selects table shards by attack folder)."""
        if split is not None and split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        folders = self._config_folders(config)
        owner = FORMATS[format] if format else None
        chosen = []
        for entry in self.manifest["files"]:  # the one loop over the manifest's files
            path = entry["path"]
            fmt = format_of(path)
            if owner is not None and fmt is not owner:
                continue
            if split is not None and (fmt is None or split_of_shard(path) != split):
                continue
            if folders is not None and not (
                fmt is not None and fmt.per_attack and fmt.attack_of(path) in folders
            ):
                continue
            chosen.append(entry)
        return chosen

    def paths(
        self, format: str = TABLE_FORMAT.name, split: str | None = None, config: str | None = None
    ) -> list[Path]:
        """`files` as paths under the corpus folder."""
        return [self.root / e["path"] for e in self.files(format, split, config)]

    def _config_folders(self, config: str | None) -> set[str] | None:
        if config is None or config == DEFAULT_CONFIG:
            return None
        if config not in self.configs:
            raise CorpusError(
                f"unknown config {config!r}; this corpus has {', '.join(self.configs)}"
            )
        return set(self.configs[config])

    def require(self, paths: list[Path]) -> None:
        """Check (size, sha256, rows) only the files a reader is about to read, so loading one
        split neither re-hashes nor depends on the rest of the corpus."""
        wanted = {p.relative_to(self.root).as_posix() for p in paths}
        for entry in self.files():
            problem = check_entry(self.root, entry) if entry["path"] in wanted else None
            if problem:
                raise CorpusError(f"corpus {str(self.root)!r}: {problem}")

    # -- verification -----------------------------------------------------------------------
    @functools.cached_property
    def problems(self) -> tuple[str, ...]:
        """Every problem `afg verify` finds, one line each naming the file (computed once)."""
        entries, shards, root = self.files(), self.files(TABLE_FORMAT.name), self.root
        required = bool(format_major(self.manifest))  # card file table, croissant: format 1+
        problems = verify.check_files(root, entries)
        damaged = {p.split(":", 1)[0] for p in problems}
        tables = [e for e in shards if e["path"] not in damaged]
        try:
            card = read_text(root / CARD_FILE, CorpusError)  # once, bounded, a regular file
        except CorpusError as err:
            exists = (root / CARD_FILE).exists() or (root / CARD_FILE).is_symlink()
            problems.append(str(err) if exists else f"{CARD_FILE}: missing")
        else:
            problems += verify.check_schema(root, tables, card)
            if required:
                problems += verify.check_card_files(card, entries)
        if not any(TABLE_FORMAT.owns(d) for d in damaged):
            problems += verify.check_records(root, shards)
        problems += verify.check_croissant(root, entries, required)
        return tuple(problems)

    def verify(self, expected: Collection[str] = ()) -> Corpus:
        """This corpus if it passes `afg verify`, else one CorpusError naming the first
        problem. Every consumer of a local corpus comes here before reading it. `expected`:
        problems that are not (`afg extend`'s own unlisted shards, left by a cut-off run)."""
        problems = [problem for problem in self.problems if problem not in expected]
        if problems:
            raise CorpusError(
                f"corpus {str(self.root)!r} failed verification ({len(problems)} problem(s);"
                f" `afg verify {self.root}` lists them): {problems[0]}"
            )
        return self

    # -- records ----------------------------------------------------------------------------
    def table(
        self, split: str, columns: list[str] | None = None, config: str | None = None
    ) -> pa.Table:
        """The table rows of one split (and config) in file order; `columns`: only those."""
        return read_table(self.paths(split=split, config=config), columns)

    def find(self, key: str) -> dict[str, Any] | None:
        """One record by key (genome arrays as lists), or None."""
        return find_row(self.paths(), key)


def verify_corpus(root: str | os.PathLike) -> list[str]:
    """All problems `afg verify` finds, one line each naming the file; empty when intact."""
    return list(Corpus.open(root).problems)


def local_folder(path: str | os.PathLike, what: str) -> Path:
    """`path` as a local corpus folder for a command that writes into it (`what`); a Hub repo
    id is one CorpusError: its fetched copy in the AFG cache is not a place to write."""
    if not Path(path).is_dir() and _repo_id(str(path)):
        raise CorpusError(
            f"{str(path)!r} is a Hub repo; {what} writes into a corpus folder: run it on a "
            "local corpus (build it, or re-encode the repo with `afg encode REPO --out DIR`)"
        )
    return Path(path)


def _repo_id(value: str) -> bool:
    try:
        return bool(hub_repo_id(value))
    except ConfigError:
        return False


__all__ = ["DEFAULT_CONFIG", "Corpus", "local_folder", "verify_corpus"]
