"""Whole-or-nothing writes: a file (or folder) is written under `<name>.partial` and renamed
when complete, so a reader sees all of it or none. The one spelling of that rule."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

PARTIAL = ".partial"  # a file being written; never listed, read or published


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write` on `<path>.partial`, then rename: a reader sees the whole file or none."""
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_directory(path: Path, fill: Callable[[Path], Any]) -> None:
    """Call `fill` on an empty `<path>.partial` folder, then rename it to `path`."""
    tmp = partial_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
