"""`wds`: webdataset shards of image + class (img2dataset's layout, and that of large image
corpora on the Hub). Setup reads only tar headers and the small class members; a task reads the
bytes of its own images (seek + read), so a rank touches the image data of its shards only."""

from __future__ import annotations

import itertools
import re
import stat
import tarfile
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from braceexpand import braceexpand
from PIL import Image
from pydantic import Field

from afg_datasets.bounds import MAX_CLASSES, MAX_SHARDS
from afg_datasets.checks import section
from afg_datasets.documents import load_json, open_regular, parse_json, read_text
from afg_datasets.errors import SourceError
from afg_datasets.sources.base import (
    DecodedConfig,
    DecodingReader,
    Source,
    open_bytes,
    stable_id,
    takes,
)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
MAX_CLASS_MEMBER_BYTES = 1 << 20  # a .cls or .json member larger than this is not metadata
LAYOUT = (
    "expected a directory of uncompressed .tar shards or a brace pattern such as "
    "shards/{000000..000099}.tar; each sample has a jpg/png/webp image and a .cls member "
    "(or a .json member with the class in source.label_field)"
)
# webdataset's own rule: the key is the member path up to the first dot of its base name.
KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")


def pattern_size(pattern: str) -> int:
    """An upper bound on the names a brace pattern expands to, counted without expanding it
    (braceexpand builds a range's names all at once: `{0..999999999}` would fill memory):
    the product of every group's size, a range's span or a list's items."""
    total, stack = 1, []
    for position, char in enumerate(pattern):
        if char == "{":
            stack.append((position, 0))
        elif char == "," and stack:
            start, commas = stack[-1]
            stack[-1] = (start, commas + 1)
        elif char == "}" and stack:
            start, commas = stack.pop()
            numbers = RANGE.match(pattern[start + 1 : position])
            if numbers:
                low, high, step = (int(n) if n else 1 for n in numbers.groups())
                size = abs(high - low) // max(abs(step), 1) + 1
            else:
                size = commas + 1 if commas else 52  # a letter range, at most a..Z
            total *= size
            if total > MAX_SHARDS:
                return total
    return total


def shard_paths(root: str) -> list[Path]:
    """The shards a root names: every .tar in a directory (sorted), or a brace pattern; at
    most MAX_SHARDS, each a regular file (a pipe or device would block or never end)."""
    if "{" in root:
        if pattern_size(root) > MAX_SHARDS:
            raise SourceError(f"source 'wds': {root!r} names more than {MAX_SHARDS} shards")
        paths = [Path(p).expanduser() for p in braceexpand(root)]
    else:
        directory = Path(root).expanduser()
        if not directory.is_dir():
            raise SourceError(
                f"source 'wds': {root!r} is neither a directory nor a pattern; {LAYOUT}"
            )
        paths = sorted(itertools.islice(directory.glob("*.tar"), MAX_SHARDS + 1))
        if not paths:
            raise SourceError(f"source 'wds': no .tar shards in {root!r}; {LAYOUT}")
    if len(paths) > MAX_SHARDS:
        raise SourceError(f"source 'wds': {root!r} names more than {MAX_SHARDS} shards")
    for path in paths:
        if not path.exists():
            raise SourceError(f"source 'wds': shard {str(path)!r} of {root!r} does not exist")
        if not stat.S_ISREG(path.stat().st_mode):
            raise SourceError(f"source 'wds': shard {str(path)!r} is not a regular file")
    return paths


def _small_member(tar: tarfile.TarFile, info: tarfile.TarInfo, where: str) -> bytes:
    if info.size > MAX_CLASS_MEMBER_BYTES:
        raise SourceError(f"source 'wds': {where} is {info.size} bytes; not a class member")
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file
    return handle.read()


def _label(ext: str, data: bytes, field: str, where: str) -> int:
    rule = (
        f"a class is an integer in 0..{MAX_CLASSES - 1} in .cls or in the json field "
        f"{field!r} (source.label_field)"
    )
    try:
        text = data.decode().strip()
        value = int(text) if ext == "cls" else parse_json(text, where, SourceError)[field]
    except SourceError as err:
        raise SourceError(f"source 'wds': {err}; {rule}") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise SourceError(f"source 'wds': {where}: no class ({err!r}); {rule}") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_CLASSES:
        raise SourceError(f"source 'wds': {where}: class {str(value)[:40]!r}; {rule}")
    return value


def index_shard(path: Path, label_field: str) -> list[tuple[str, int, int, int]]:
    """(key, image offset, image size, class) of each sample of one shard, in shard order."""
    samples: dict[str, dict] = {}
    current = None
    try:
        with (
            open_regular(path, SourceError) as handle,
            tarfile.open(fileobj=handle, mode="r:") as tar,
        ):
            for info in tar:
                match = KEY_EXT.match(info.name)
                if not info.isfile() or not match:
                    continue
                key, ext = match.group(1), match.group(2).lower()
                if key != current and key in samples:  # webdataset groups adjacent members
                    raise SourceError(
                        f"source 'wds': {path.name}: sample {key!r} appears again after other "
                        "samples; the members of one sample must be adjacent"
                    )
                current = key
                sample = samples.setdefault(key, {})
                where = f"{path.name}:{info.name}"
                if ext in IMAGE_EXTENSIONS:
                    sample["image"] = (info.offset_data, info.size)
                elif ext in ("cls", "json") and "label" not in sample:
                    data = _small_member(tar, info, where)
                    sample["label"] = _label(ext, data, label_field, where)
    except (tarfile.TarError, OSError) as err:
        raise SourceError(f"source 'wds': cannot read shard {str(path)!r}: {err}") from None
    rows = []
    for key, sample in samples.items():
        if "image" not in sample:
            continue  # metadata without an image is not a source image
        if "label" not in sample:
            raise SourceError(f"source 'wds': {path.name}: sample {key!r} has no class; {LAYOUT}")
        rows.append((key, *sample["image"], sample["label"]))
    return rows


def class_names(
    directory: Path, labels: np.ndarray, configured: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """From source.class_names, else classes.txt (one per line) or classes.json (a list)
    beside the shards, else 0..K-1."""
    if configured:
        names = list(configured)
    elif (directory / "classes.txt").is_file():
        names = read_text(directory / "classes.txt", SourceError).splitlines()
    elif (directory / "classes.json").is_file():
        names = load_json(directory / "classes.json", SourceError, top=list)
    else:
        return tuple(str(c) for c in range(int(labels.max()) + 1))
    if int(labels.max()) >= len(names):
        raise SourceError(
            f"source 'wds': {directory} names {len(names)} classes but the shards use class "
            f"{int(labels.max())}; source.class_names or classes.txt/json must list every class "
            "in order"
        )
    return tuple(str(n) for n in names)


class TarReader(DecodingReader):
    """Items are image members of tar shards, read at their recorded offsets."""

    def __init__(self, shards: tuple[str, ...], members: np.ndarray, ids, size, resize):
        super().__init__(ids, size, resize)
        self.shards, self.members = shards, members  # members: int64 [N, 3] shard, offset, size

    def open_item(self, index: int) -> Image.Image:
        shard, offset, size = self.members[index].tolist()
        with open_regular(Path(self.shards[shard]), SourceError) as handle:
            handle.seek(offset)
            return open_bytes(handle.read(size))

    def describe(self, index: int) -> str:
        return f"{self.shards[self.members[index, 0]]} (sample {self.ids[index]})"


@section("source.")
class WdsConfig(DecodedConfig):
    """root: a directory of .tar shards or a brace pattern `shards/{000000..000099}.tar`."""

    name: Literal["wds"] = "wds"
    label_field: str = "label"  # the json field holding the class (when there is no .cls)
    # class names in label order (else classes.txt / classes.json beside the shards)
    class_names: Annotated[tuple[str, ...], Field(strict=False)] = ()


@takes(WdsConfig)
def load_wds(cfg: WdsConfig) -> Source:
    """webdataset shards under --source-root (a directory or a brace pattern)."""
    if not cfg.root:
        raise SourceError(f"source 'wds' needs --source-root; {LAYOUT}")
    paths = shard_paths(cfg.root)
    keys, members, labels = [], [], []
    for number, path in enumerate(paths):
        for key, offset, size, label in index_shard(path, cfg.label_field):
            keys.append((path.name, key))
            members.append((number, offset, size))
            labels.append(label)
    if not keys:
        raise SourceError(f"source 'wds': no image samples in {cfg.root!r}; {LAYOUT}")
    unique = len({key for _, key in keys}) == len(keys)
    ids = tuple(stable_id("wds", key if unique else f"{shard}/{key}") for shard, key in keys)
    labels_array = np.array(labels, dtype=np.int64)
    directory = paths[0].parent
    return Source(
        name="wds",
        labels=labels_array,
        class_names=class_names(directory, labels_array, cfg.class_names),
        ids=ids,
        license="unknown",
        citation=f"webdataset shards {cfg.root}",
        reader=TarReader(
            tuple(map(str, paths)),
            np.array(members, dtype=np.int64),
            ids,
            cfg.image_size,
            cfg.resize,
        ),
        channels=3,
        image_size=cfg.image_size,
        on_bad_image=cfg.on_bad_image,
    )
