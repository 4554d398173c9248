"""Whole-or-nothing writes: a file (or folder) is written under `<name>.partial` and renamed
when complete, so a reader sees all of it or none. The one spelling of that rule, and of the
write-path rule: nothing is written through a link or into a non-folder (`foreign_entry`)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

PARTIAL = ".partial"  # a file being written; never listed, read or published


def partial_path(path: Path, shared: bool = False) -> Path:
    """Where `path` is written before its rename. With `shared`, several processes may write
    `path` at once (a cache entry): each gets its own `<path>.<pid>.partial`, so none removes
    or renames another's."""
    return path.with_name(f"{path.name}.{os.getpid()}{PARTIAL}" if shared else path.name + PARTIAL)


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], shared: bool = False) -> None:
    """Call `write` on `<path>.partial`, then rename: a reader sees the whole file or none
    (`shared`: as `partial_path`)."""
    tmp = partial_path(path, shared)
    tmp.unlink(missing_ok=True)  # a leftover, or a link planted there: never written through
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_figure(figure: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure written whole or not at all (never through a link at `path`)."""
    atomic_write(path, lambda handle: figure.savefig(handle, dpi=dpi, format=path.suffix[1:]))


def owned_folder(path: Path) -> Path:
    """`path` as a folder to write into: created if missing; a link or non-folder there, or a
    link inside it, is refused (`foreign_entry`: an OSError naming it)."""
    foreign = foreign_entry(path.parent, [path.name], [])
    if foreign:
        raise NotADirectoryError(foreign)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_directory(
    path: Path, fill: Callable[[Path], Any], replace: bool = False, shared: bool = False
) -> None:
    """Call `fill` on an empty `<path>.partial` folder, then rename it to `path` (with
    `replace`, a folder already there is removed first, once the new one is complete). With
    `shared`, processes may race to make the same folder (a cache entry: the same content
    whoever makes it): each fills its own (`partial_path`), and the first to finish wins."""
    tmp = partial_path(path, shared)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        if replace and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError:
            if not (shared and path.is_dir()):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process completed it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def foreign_entry(root: Path, folders: Iterable[str], files: Iterable[str]) -> str | None:
    """The first of `root`'s own outputs that a build could not have made, named with what it
    is: a symbolic link or special file anywhere in `folders`, a non-folder at a folder's
    name, a non-regular file at one of `files`' names; None if there is none. Writing through
    one would put a build's bytes somewhere else."""
    for name, folder in [*((n, True) for n in folders), *((n, False) for n in files)]:
        path = root / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        wanted = stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
        if not wanted:
            return f"{path}: {_kind(mode)} where the build writes its own {name}"
        for parent, dirs, names in os.walk(path) if folder else ():
            for entry in (os.path.join(parent, n) for n in [*dirs, *names]):
                mode = os.lstat(entry).st_mode
                if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    return f"{entry}: {_kind(mode)} inside the build's {name}/"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a folder" if stat.S_ISDIR(mode) else "not a folder or regular file"
