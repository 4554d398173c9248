"""A corpus's manifest: read it (format checked) and check one entry's file (`Corpus` applies
these to its files). Nothing here imports torch."""

from __future__ import annotations

from pathlib import Path

from afg_datasets.errors import CorpusError
from afg_datasets.formats import format_of
from afg_datasets.layout import (
    CORPUS_DIRS,
    MANIFEST_FILE,
    check_format,
    read_json,
    regular_file,
    sha256_file,
)


def load_manifest(root: Path) -> dict:
    """The manifest of a corpus whose format this package reads (every reader comes here)."""
    path = root / MANIFEST_FILE
    manifest = read_json(path, "missing; not a complete AFG corpus", "manifest")
    check_format(manifest, path)
    return manifest


def check_place(root: Path, entry: dict) -> str | None:
    """The problem with where a manifest entry is, if any: an unsafe path, not a regular file,
    or a size other than the manifest's (checked before anything is read or hashed)."""
    relative = entry["path"]
    why = regular_file(root, relative, CORPUS_DIRS)
    if why:
        return f"{relative}: {why}"
    size = (root / relative).stat().st_size
    if size != entry["bytes"]:
        return f"{relative}: {size} bytes, manifest says {entry['bytes']}"  # not worth hashing
    return None


def check_entry(root: Path, entry: dict) -> str | None:
    """The problem with one manifest entry, if any: its place (`check_place`), hash, rows."""
    relative = entry["path"]
    path = root / relative
    why = check_place(root, entry)
    if why:
        return why
    if sha256_file(path) != entry["sha256"]:
        return f"{relative}: sha256 differs from the manifest"  # nor its rows worth reading
    fmt = format_of(relative)
    try:
        rows = fmt.rows(path) if fmt else None
    except CorpusError as err:
        return f"{relative}: {err}"
    if entry["rows"] is not None and rows != entry["rows"]:
        return f"{relative}: {rows} rows, manifest says {entry['rows']}"
    return None
