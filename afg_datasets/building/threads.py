"""torch/OpenMP threads per process, shared among every build running on this node.

Each build registers its processes in a small directory under the cache (`running/<pid>`, the
process count inside; entries of dead processes are ignored and removed), so a build started
beside another takes its share of the cores instead of all of them. One thread per core
avoids the oversubscription that makes several torch processes on one node crawl.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from afg_datasets.models.storage import cache_root

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
        if not (entry.name.isdigit() and len(entry.name) <= MAX_PID_DIGITS):
            continue  # not an entry this package writes
        if not _alive(int(entry.name)):
            entry.unlink(missing_ok=True)
            continue
        total += _entry_processes(entry)
    return total


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
    return max(1, min(int(text), MAX_PROCESSES)) if text.strip().isdigit() else 1


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
    if env.get("OMP_NUM_THREADS", "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return int(env["OMP_NUM_THREADS"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local_ranks = env.get("LOCAL_WORLD_SIZE", "1")
    ranks = int(local_ranks) if local_ranks.isdigit() and local_ranks != "0" else 1
    sharing = max(processes * ranks, node_processes())
    return max(1, (cpus or 1) // sharing)


def torch_threads(explicit: int | None, processes: int = 1) -> int:
    """Torch threads per process: `explicit` (--threads), else this node's fair share for
    `processes` processes (`thread_budget`)."""
    return explicit or thread_budget(processes)
