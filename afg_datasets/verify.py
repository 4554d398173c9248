"""`afg verify`: every file against the manifest, schema against the card, split and key rules."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features
from huggingface_hub import DatasetCard

from afg_datasets.errors import CorpusError, first_line
from afg_datasets.layout import (
    CARD_FILE,
    CORPUS_DIRS,
    CROISSANT_FILE,
    DATA_DIR,
    MANIFEST_FILE,
    SPLITS,
    WDS_DIR,
    check_format,
    read_json,
    regular_file,
    sha256_file,
    split_of_shard,
)

__all__ = ["CorpusError", "load_manifest", "require_intact", "split_files", "verify_corpus"]


# What a webdataset shard of a corpus may hold: nothing a decoder would unpickle.
TAR_SUFFIXES = (".png", ".json", ".npy")


def tar_samples(path: Path) -> int:
    """Samples in a shard; a member that is not a regular file with a safe name and a known
    suffix (.png .json .npy: never .pyd or .pickle) is a CorpusError."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    for member in members:
        name = member.name
        if not member.isfile() or "/" in name or name.startswith(".") or "\\" in name:
            raise CorpusError(f"{path.name}: member {name!r} is not a plain file name")
        if not name.endswith(TAR_SUFFIXES):
            raise CorpusError(
                f"{path.name}: member {name!r} has a suffix outside {', '.join(TAR_SUFFIXES)}"
            )
    return len({m.name.split(".", 1)[0] for m in members})


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
    try:
        rows = _rows(path)
    except CorpusError as err:
        return f"{relative}: {err}"
    if entry["rows"] is not None and rows != entry["rows"]:
        return f"{relative}: {rows} rows, manifest says {entry['rows']}"
    return None


def check_files(root: Path, manifest: dict) -> list[str]:
    """Every manifest entry (see `check_entry`); files or links the manifest does not list."""
    problems = [p for p in (check_entry(root, e) for e in manifest["files"]) if p]
    listed = {entry["path"] for entry in manifest["files"]}
    for folder in CORPUS_DIRS:
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                problems.append(f"{relative}: a symlink (a corpus holds regular files only)")
            elif path.is_file() and relative not in listed:
                problems.append(f"{relative}: not in the manifest")
    return problems


def _rows(path: Path) -> int | None:
    try:
        if path.suffix == ".parquet":
            return pq.read_metadata(path).num_rows
        if path.suffix == ".tar":
            return tar_samples(path)
    except (pa.ArrowException, tarfile.TarError, OSError) as err:
        first = first_line(err)
        raise CorpusError(f"not a readable {path.suffix[1:]} file ({first})") from None
    return None


def card_features(root: Path) -> Features:
    """The features the card's YAML declares; a CorpusError when the card cannot say."""
    try:
        card = DatasetCard.load(root / CARD_FILE)
        infos = card.data.to_dict().get("dataset_info")
        info = infos[0] if isinstance(infos, list) else infos
        return Features._from_yaml_list(info["features"])
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        first = first_line(err)
        raise CorpusError(f"{CARD_FILE}: no readable dataset_info.features ({first})") from None


def check_schema(root: Path, manifest: dict, skip: set[str]) -> list[str]:
    """Each (undamaged) parquet file's schema equals the features the card declares."""
    try:
        expected = card_features(root).arrow_schema.remove_metadata()
    except CorpusError as err:
        return [str(err)]
    problems = []
    for entry in manifest["files"]:
        path = root / entry["path"]
        if path.suffix == ".parquet" and entry["path"] not in skip:
            schema = pq.read_schema(path).remove_metadata()
            if not schema.equals(expected):
                problems.append(f"{entry['path']}: schema differs from the card's features")
    return problems


def check_records(root: Path, manifest: dict) -> list[str]:
    """Keys unique across the corpus; every source id in exactly one split."""
    keys: Counter[str] = Counter()
    split_of: dict[str, set[str]] = {}
    for entry in manifest["files"]:
        path = root / entry["path"]
        if path.suffix != ".parquet" or not path.is_file():
            continue
        split = split_of_shard(entry["path"])
        try:
            table = pq.read_table(path, columns=["key", "source_id"], use_threads=False)
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


def _format_major(manifest: dict) -> int:
    return int(manifest.get("format_version", "0.0").split(".")[0])


def check_card_files(root: Path, manifest: dict) -> list[str]:
    """The card's file table (format 1 and later) gives every file the manifest's size and
    sha256."""
    if _format_major(manifest) == 0:
        return []
    text = (root / CARD_FILE).read_text(errors="replace")
    return [
        f"{CARD_FILE}: its file table lacks {e['path']} with the manifest's size and sha256"
        for e in manifest["files"]
        if f"| `{e['path']}` | {e['bytes']} | `{e['sha256']}` |" not in text
    ]


def check_croissant(root: Path, manifest: dict) -> list[str]:
    """croissant.json (format 1 and later) lists exactly the manifest's files with the same
    sha256 and size. Plain JSON: verify does not import mlcroissant."""
    path = root / CROISSANT_FILE
    if not path.is_file():
        return [f"{CROISSANT_FILE}: missing"] if _format_major(manifest) else []
    try:
        document = read_json(path)
        objects = {
            d["@id"]: (d.get("sha256"), d.get("contentSize"))
            for d in document["distribution"]
            if d.get("@type") == "cr:FileObject"
        }
    except (CorpusError, KeyError, TypeError, AttributeError):
        return [f"{CROISSANT_FILE}: not a Croissant document with a distribution list"]
    expected = {e["path"]: (e["sha256"], f"{e['bytes']} B") for e in manifest["files"]}
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


def split_files(root: Path, manifest: dict, split: str, fmt: str = "parquet") -> list[Path]:
    """The manifest's parquet (data/) or webdataset (wds/) files of one split, sorted."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    folder = DATA_DIR if fmt == "parquet" else WDS_DIR
    return sorted(
        root / e["path"]
        for e in manifest["files"]
        if e["path"].startswith(f"{folder}/") and split_of_shard(e["path"]) == split
    )


def load_manifest(root: Path) -> dict:
    """The manifest of a corpus whose format this package reads (every reader comes here)."""
    path = root / MANIFEST_FILE
    manifest = read_json(path, "missing; not a complete AFG corpus", "manifest")
    check_format(manifest, path)
    return manifest


def verify_corpus(root: str | Path, manifest: dict | None = None) -> list[str]:
    """All problems found, one line each naming the file; empty when the corpus is intact."""
    root = Path(root)
    manifest = manifest or load_manifest(root)
    problems = check_files(root, manifest)
    damaged = {p.split(":", 1)[0] for p in problems}
    if not (root / CARD_FILE).is_file():
        problems.append(f"{CARD_FILE}: missing")
    else:
        problems += check_schema(root, manifest, damaged) + check_card_files(root, manifest)
    if not any(d.endswith(".parquet") for d in damaged):
        problems += check_records(root, manifest)
    return problems + check_croissant(root, manifest)


def require_intact(root: str | Path) -> dict:
    """The manifest of a corpus that passes `verify_corpus`, else one CorpusError naming the
    first problem. Every consumer of a local corpus goes through here before using it."""
    manifest = load_manifest(Path(root))
    problems = verify_corpus(root, manifest)
    if problems:
        raise CorpusError(
            f"corpus {str(root)!r} failed verification ({len(problems)} problem(s); "
            f"`afg verify {root}` lists them): {problems[0]}"
        )
    return manifest


def require_files(root: str | Path, manifest: dict, paths: list[Path]) -> None:
    """Check (size, sha256, rows) only the listed files a reader is about to read, so loading
    one split neither re-hashes nor depends on the rest of the corpus."""
    root = Path(root)
    wanted = {p.relative_to(root).as_posix() for p in paths}
    for entry in manifest["files"]:
        problem = check_entry(root, entry) if entry["path"] in wanted else None
        if problem:
            raise CorpusError(f"corpus {str(root)!r}: {problem}")
