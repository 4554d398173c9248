"""CPU threads: one per process for the numerics, and the node's cores shared among builds.

Every torch computation a corpus's bytes depend on (training the target model, fitting an
encoder, attacks, predictions, genomes) runs on NUMERIC_THREADS intra-op threads: on CPU a
reduction split over N threads sums in another order, and one flipped gradient step moves a
quantized pixel, so the thread count would otherwise change the bytes. Throughput on CPU comes
from task processes instead (`cpu_workers`).

Each build registers its processes in a small directory under the cache (`running/<pid>`, the
process count inside; entries of dead processes are ignored and removed), so a build started
beside another takes its share of the cores instead of all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from afg_datasets.checks import count_text
from afg_datasets.errors import ConfigError
from afg_datasets.resources import cache_root

log = logging.getLogger(__name__)

MAX_PID_DIGITS = 10  # longer names are not pids (Linux pids stay below 2**22)
MAX_ENTRY_BYTES = 16
MAX_PROCESSES = 4096


def registry() -> Path:
    return cache_root() / "running"


@contextlib.contextmanager
def registered(processes: int) -> Iterator[None]:
    """This build, running `processes` task processes, counts in every budget on the node."""
    path = registry() / str(os.getpid())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a stale entry, or a link planted there: never written
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(processes))
    except OSError:  # a read-only cache: budgets then count this build's processes only
        yield
        return
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def node_processes() -> int:
    """Task processes of the builds running on this node (0 if none registered)."""
    total = 0
    try:
        entries = list(registry().iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not _ours(entry):
            log.debug("%s: not a build registry entry; ignored", entry)
            continue
        if not _alive(int(entry.name)):
            with contextlib.suppress(OSError):  # another build may remove it first
                entry.unlink()
            continue
        total += _entry_processes(entry)
    return total


def _ours(entry: Path) -> bool:
    """Whether a registry entry is one this package writes: a regular file named by a pid
    (a folder, link or other name there is someone else's, never read or removed)."""
    if count_text(entry.name, 10**MAX_PID_DIGITS - 1) is None:
        return False
    try:
        return stat.S_ISREG(entry.lstat().st_mode)
    except OSError:
        return False


def _entry_processes(entry: Path) -> int:
    """The process count a registry entry holds: a small regular file, read without following
    links and at most a few bytes (1 for anything else)."""
    try:
        descriptor = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 1
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return 1
        text = handle.read(MAX_ENTRY_BYTES)
    count = count_text(text.decode("ascii", "replace"), 10**MAX_ENTRY_BYTES)
    return max(1, min(count, MAX_PROCESSES)) if count is not None else 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or no possible pid
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def thread_budget(processes: int, env: Mapping[str, str] = os.environ) -> int:
    """Threads for each of `processes` processes this build starts: OMP_NUM_THREADS when set,
    else this process's CPUs divided among the task processes on the node (this build's,
    torchrun's LOCAL_WORLD_SIZE ranks, and every other registered build)."""
    threads = env.get("OMP_NUM_THREADS", "").strip()
    if threads:
        count = count_text(threads, MAX_PROCESSES)
        if not count:
            raise ConfigError(
                f"environment variable OMP_NUM_THREADS={threads[:40]!r} must be a thread count "
                f"in 1..{MAX_PROCESSES}"
            )
        return count
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ranks = count_text(env.get("LOCAL_WORLD_SIZE", "1"), MAX_PROCESSES) or 1
    sharing = max(processes * ranks, node_processes())
    return max(1, (cpus or 1) // sharing)


NUMERIC_THREADS = 1  # a format rule (docs/format.md): the same bytes on any layout


def pin_numeric_threads() -> None:
    """This process computes on NUMERIC_THREADS torch threads from here on."""
    torch.set_num_threads(NUMERIC_THREADS)


@contextlib.contextmanager
def numeric_threads() -> Iterator[None]:
    """Inside, this process computes on NUMERIC_THREADS torch threads; restored on exit."""
    previous = torch.get_num_threads()
    pin_numeric_threads()
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_workers(explicit: int | None) -> int:
    """Task processes of a CPU build: `explicit` (--threads: the cores it may use), else this
    node's fair share (`thread_budget`), each process computing on one thread."""
    return explicit or thread_budget(1)
