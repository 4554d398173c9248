"""The manifest API of a corpus: read it (format checked), pick a split's shards, check the
files a reader is about to read. Every reader starts here; nothing here imports torch."""

from __future__ import annotations

from pathlib import Path

from afg_datasets.errors import CorpusError
from afg_datasets.formats import FORMATS, TABLE_FORMAT, format_of, split_of_shard
from afg_datasets.layout import (
    CORPUS_DIRS,
    MANIFEST_FILE,
    SPLITS,
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


def split_files(root: Path, manifest: dict, split: str, fmt: str = TABLE_FORMAT.name) -> list[Path]:
    """The manifest's shards of one split in one format (FORMATS), sorted."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    owner = FORMATS[fmt]
    return sorted(
        root / e["path"]
        for e in manifest["files"]
        if owner.owns(e["path"]) and split_of_shard(e["path"]) == split
    )


def require_files(root: str | Path, manifest: dict, paths: list[Path]) -> None:
    """Check (size, sha256, rows) only the listed files a reader is about to read, so loading
    one split neither re-hashes nor depends on the rest of the corpus."""
    root = Path(root)
    wanted = {p.relative_to(root).as_posix() for p in paths}
    for entry in manifest["files"]:
        problem = check_entry(root, entry) if entry["path"] in wanted else None
        if problem:
            raise CorpusError(f"corpus {str(root)!r}: {problem}")
