"""The on-disk contract of a corpus: file names, marker paths, the safe-path rule, hashing.

Every file inside a build directory is named here or, for shards, by its format (formats/);
nothing here imports torch, so the reader side (verify, push, card) starts fast on a login node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from afg_datasets.documents import load_json
from afg_datasets.errors import CorpusError
from afg_datasets.files import atomic_write
from afg_datasets.formats import FORMAT_DIRS
from afg_datasets.schemas import SHAPES

SPLITS = ("train", "validation", "test")

# The corpus format (docs/format.md), in the manifest and the plan. A reader refuses an unknown
# major version and reads a newer minor one with a warning. Format 0 is a corpus built by
# afg-datasets 0.2 (no field): its files are laid out as 1.0's, so it is read, with a warning.
FORMAT_VERSION = "1.6"  # 1.6: webdataset shards per variant (wds/<attack>/), as parquet's
FORMAT_SPEC = "docs/format.md"
_VERSION = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")
log = logging.getLogger(__name__)
PLAN_FILE = "plan.json"
MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
CARD_FILE = "README.md"
CROISSANT_FILE = "croissant.json"  # MLCommons Croissant metadata (croissant.py)
TASKS_DIR = "tasks"
SETUP_FILE = f"{TASKS_DIR}/setup.json"
LOCK_FILE = ".afg.lock"
MODEL_DIR = "model"
MODEL_FILE = "model.safetensors"
# A stateful encoder's state (groupbasis: its fitted basis), beside the model it was fitted on.
ENCODER_STATE_FILE = "genome_basis.safetensors"
ATLAS_FILE = "genome_atlas.png"  # groupbasis (1.4): its basis rendered once
INFO_FILE = "model.json"
# Derived figures written into a finished corpus (afg afs, afg bench); owned by the build too.
AFS_JSON = "afs.json"
AFS_PNG = "afs.png"
EXAMPLES_PNG = "examples.png"  # 1.5: a clean / adversarial pair per attack (the card's figure)
BENCH_DIR = "bench"
BENCH_RESULTS, BENCH_TABLE = "results.json", "results.md"
BENCH_FILES = (BENCH_RESULTS, BENCH_TABLE, "roc.png")
# Everything a build owns inside its output directory; nothing else there is ever touched, and
# --overwrite removes all of it (derived figures included: they describe the old corpus).
OUTPUTS = (
    *FORMAT_DIRS,
    MODEL_DIR,
    TASKS_DIR,
    CARD_FILE,
    CROISSANT_FILE,
    MANIFEST_FILE,
    STATS_FILE,
    PLAN_FILE,
    AFS_JSON,
    AFS_PNG,
    EXAMPLES_PNG,
    BENCH_DIR,
)
OUTPUT_DIRS = (*FORMAT_DIRS, MODEL_DIR, TASKS_DIR, BENCH_DIR)  # the folders among OUTPUTS
# Published besides the manifest's files (which it hashes): the rule `afg push` follows.
PUBLISHED_EXTRAS = (
    CARD_FILE,
    CROISSANT_FILE,
    MANIFEST_FILE,
    STATS_FILE,
    AFS_JSON,
    AFS_PNG,
    EXAMPLES_PNG,
    *(f"{BENCH_DIR}/{name}" for name in BENCH_FILES),
)
# Published directories whose every file the manifest lists.
CORPUS_DIRS = (*FORMAT_DIRS, MODEL_DIR)
# What a push owns in a Hub repo: these folders and the extras' names. A repo file there that
# the corpus does not have is another build's and is deleted by the push; the rest is kept.
PUBLISHED_DIRS = (*CORPUS_DIRS, BENCH_DIR)


_PLAIN_PART = re.compile(r"[A-Za-z0-9._-]{1,255}")  # a file name's part: no odd characters


def plain_name(path: str) -> bool:
    """Whether a repo path (from a Hub listing: data, never trusted) is a normalized file path
    of plain parts: no empty, `.` or `..` part, no trailing `/`, no `.git` part, no control or
    other odd characters. Only such a path is ever deleted by a push."""
    parts = path.split("/")
    return all(_PLAIN_PART.fullmatch(p) and p.lower() not in (".", "..", ".git") for p in parts)


def published_name(path: str) -> bool:
    """Whether a repo path is one a corpus push owns (`PUBLISHED_DIRS`, `PUBLISHED_EXTRAS`):
    a plain name (`plain_name`) in those folders or among those names."""
    if not plain_name(path):
        return False
    return path.split("/", 1)[0] in PUBLISHED_DIRS or path in PUBLISHED_EXTRAS


def shown_name(path: str) -> str:
    """A name from a listing as it may be printed: itself when plain, else escaped (`ascii`)."""
    return path if plain_name(path) else ascii(path)


# A saved recognizer (`Recognizer.save`): exactly what `afg push-recognizer` uploads.
RECOGNIZER_FILES = (
    "README.md",
    "config.json",
    "model.safetensors",
    "recognizer.json",
    "target_model/model.json",
    "target_model/model.safetensors",
)
# ... and, for a corpus whose encoder has state, that state too.
RECOGNIZER_OPTIONAL = (f"target_model/{ENCODER_STATE_FILE}",)


def write_json(path: Path, data: Any, sort_keys: bool = False) -> None:
    """Atomically write indented JSON (insertion order unless `sort_keys`: deterministic, and
    meaningful for attacks and columns)."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def marker_path(out: Path, task_id: int) -> Path:
    return out / TASKS_DIR / f"{task_id:05d}.json"


def task_lock_path(out: Path, task_id: int) -> Path:
    """Held by the process running the task (so two builds racing into one --out share the
    tasks instead of deleting each other's files)."""
    return out / TASKS_DIR / f"{task_id:05d}.lock"


Folders = tuple[str, ...] | None


def unsafe_path(root: Path, relative: str, folders: Folders = CORPUS_DIRS) -> str | None:
    """Why a corpus-relative path may not be opened (None: it may): it must be relative,
    normalized, inside one of `folders` (None: anywhere in the corpus), and no symlink on the
    way, itself included. The one rule for every reader and uploader."""
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in relative:
        return "not a normalized relative path inside the corpus"
    if folders is not None and parts[0] not in folders:
        return f"outside the corpus folders {', '.join(folders)}"
    for depth in range(1, len(parts) + 1):
        if (root / "/".join(parts[:depth])).is_symlink():
            return "a symlink (a corpus holds regular files only)"
    return None


def regular_file(root: Path, relative: str, folders: Folders = None) -> str | None:
    """Why `root/relative` is not a regular file that may be read (None: it is), checked
    without following links (`unsafe_path`)."""
    why = unsafe_path(root, relative, folders)
    if why:
        return why
    path = root / relative
    if not path.exists():
        return "missing"
    return None if stat.S_ISREG(path.lstat().st_mode) else "not a regular file"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(out: Path, path: Path, rows: int | None) -> dict[str, Any]:
    """A manifest entry: path relative to the corpus, sha256, bytes, rows (None: not a table)."""
    return {
        "path": path.relative_to(out).as_posix(),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "rows": rows,
    }


def format_major(document: dict[str, Any]) -> int | None:
    """The major format number of a manifest or plan: 0 when it names none (afg-datasets 0.2),
    None when what it names is not MAJOR.MINOR."""
    match = _VERSION.match(str(document.get("format_version", "0.0")))
    return int(match[1]) if match else None


def format_version(document: dict[str, Any]) -> tuple[int, int]:
    """(major, minor) of a manifest or plan; (0, 0) when it names none or no MAJOR.MINOR."""
    match = _VERSION.match(str(document.get("format_version", "0.0")))
    return (int(match[1]), int(match[2])) if match else (0, 0)


def check_format(data: dict[str, Any], path: Path) -> str:
    """The format version of a manifest or plan read from `path`; a CorpusError naming both
    versions when this package cannot read it (see FORMAT_VERSION)."""
    found = data.get("format_version", "0.0")
    match = _VERSION.match(found) if isinstance(found, str) else None
    if match is None:
        raise CorpusError(f"{path}: format_version {found!r} is not MAJOR.MINOR")
    major, minor = int(match[1]), int(match[2])
    ours_major, ours_minor = (int(p) for p in FORMAT_VERSION.split("."))
    if major > ours_major:
        raise CorpusError(
            f"{path}: corpus format {found}, this afg-datasets reads format {FORMAT_VERSION} "
            f"and 0; upgrade afg-datasets to read it"
        )
    if major == 0:
        log.warning(
            "%s: corpus format 0 (built by afg-datasets 0.2, no format_version): read as "
            "format %s; rebuild it with `afg build-shards` and the config in its manifest for "
            "croissant.json and bounded row groups",
            path,
            FORMAT_VERSION,
        )
    elif minor > ours_minor:
        log.warning(
            "%s: corpus format %s is newer than this afg-datasets' %s; fields added since "
            "are ignored",
            path,
            found,
            FORMAT_VERSION,
        )
    return found


def read_json(path: Path, missing: str = "missing", shape: str | None = None) -> Any:
    """A JSON file of a corpus or build, checked against `shape` (a name in `schemas.SHAPES`)
    when given; a missing, malformed or misshapen one is a `CorpusError` naming the field."""
    if not path.is_file():
        raise CorpusError(f"{path}: {missing}")
    data = load_json(path, CorpusError)
    if shape is not None:
        try:
            SHAPES[shape].validate_python(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            raise CorpusError(
                f"{path}: not a valid {shape} file: {where}: {first['msg']} "
                f"({err.error_count()} problem(s))"
            ) from None
    return data
