"""`afg verify`'s rules: every file against the manifest, schema against the card, split and key
rules, croissant against the manifest. `Corpus.problems` applies them to a corpus's files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
from datasets import Features
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard

from afg_datasets.corpus.manifest import check_entry
from afg_datasets.errors import CorpusError, first_line
from afg_datasets.formats import TABLE_FORMAT, split_of_shard
from afg_datasets.layout import (
    CARD_FILE,
    CORPUS_DIRS,
    CROISSANT_FILE,
    read_json,
)

__all__ = ["check_card_files", "check_croissant", "check_files", "check_records", "check_schema"]


def check_files(root: Path, entries: list[dict]) -> list[str]:
    """Every manifest entry (see `check_entry`); files or links the manifest does not list."""
    problems = [p for p in (check_entry(root, e) for e in entries) if p]
    listed = {entry["path"] for entry in entries}
    for folder in CORPUS_DIRS:
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                problems.append(f"{relative}: a symlink (a corpus holds regular files only)")
            elif path.is_file() and relative not in listed:
                problems.append(f"{relative}: not in the manifest")
    return problems


def card_features(card: str) -> Features:
    """The features the card's YAML declares; a CorpusError when the card cannot say."""
    try:
        infos = DatasetInfosDict.from_dataset_card_data(DatasetCard(card).data)
        return next(iter(infos.values())).features
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        first = first_line(err)
        raise CorpusError(f"{CARD_FILE}: no readable dataset_info.features ({first})") from None


def check_schema(root: Path, tables: list[dict], card: str) -> list[str]:
    """Each (undamaged) table shard's schema equals the features the card declares."""
    try:
        expected = card_features(card).arrow_schema.remove_metadata()
    except CorpusError as err:
        return [str(err)]
    return [
        f"{entry['path']}: schema differs from the card's features"
        for entry in tables
        if not TABLE_FORMAT.schema(root / entry["path"]).equals(expected)
    ]


def check_records(root: Path, tables: list[dict]) -> list[str]:
    """Keys unique across the corpus; every source id in exactly one split."""
    keys: Counter[str] = Counter()
    split_of: dict[str, set[str]] = {}
    for entry in tables:
        path = root / entry["path"]
        if not path.is_file():
            continue
        split = split_of_shard(entry["path"])
        try:
            table = TABLE_FORMAT.read_columns(path, ["key", "source_id"])
        except (pa.ArrowException, OSError) as err:
            return [f"{entry['path']}: key and source_id unreadable ({err})"]
        keys.update(table.column("key").to_pylist())
        for source_id in set(table.column("source_id").to_pylist()):
            split_of.setdefault(source_id, set()).add(split)
    problems = [f"key {k!r}: appears {n} times" for k, n in keys.items() if n > 1]
    problems += [
        f"source {s!r}: in several splits {sorted(v)}" for s, v in split_of.items() if len(v) > 1
    ]
    return problems


def check_card_files(card: str, entries: list[dict]) -> list[str]:
    """The card's file table (format 1 and later) gives every file the manifest's size and
    sha256."""
    return [
        f"{CARD_FILE}: its file table lacks {e['path']} with the manifest's size and sha256"
        for e in entries
        if f"| `{e['path']}` | {e['bytes']} | `{e['sha256']}` |" not in card
    ]


def check_croissant(root: Path, entries: list[dict], required: bool) -> list[str]:
    """croissant.json (`required` from format 1) lists exactly the manifest's files with the
    same sha256 and size. Plain JSON: verify does not import mlcroissant."""
    path = root / CROISSANT_FILE
    if not path.is_file():
        return [f"{CROISSANT_FILE}: missing"] if required else []
    try:
        document = read_json(path)
        objects = {
            d["@id"]: (d.get("sha256"), d.get("contentSize"))
            for d in document["distribution"]
            if d.get("@type") == "cr:FileObject"
        }
    except (CorpusError, KeyError, TypeError, AttributeError):
        return [f"{CROISSANT_FILE}: not a Croissant document with a distribution list"]
    expected = {e["path"]: (e["sha256"], f"{e['bytes']} B") for e in entries}
    problems = [
        f"{CROISSANT_FILE}: {name}: sha256 or size differs from the manifest"
        for name in sorted(set(objects) & set(expected))
        if objects[name] != expected[name]
    ]
    problems += [f"{CROISSANT_FILE}: lacks {n}" for n in sorted(set(expected) - set(objects))]
    problems += [
        f"{CROISSANT_FILE}: lists {n}, not in the manifest"
        for n in sorted(set(objects) - set(expected))
    ]
    return problems
