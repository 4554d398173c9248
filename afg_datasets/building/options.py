"""How (not what) to build: run options, validated on creation so a bad library call writes
nothing. None of these change a corpus's bytes on CPU (numerics run on one thread per process,
`threads.NUMERIC_THREADS`; throughput comes from processes)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from afg_datasets.building.executors import EXECUTORS, ExecutorOptions
from afg_datasets.building.threads import cpu_workers
from afg_datasets.errors import ConfigError


def check_device(device: str) -> None:
    """A usable torch device name (cpu, cuda, cuda:N), else a ConfigError naming it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown --device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported --device {device!r}; use cpu, cuda or cuda:N")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r} requested but CUDA is not available; use cpu")


def resolve_ranks(
    rank: int | None, world_size: int | None, env: Mapping[str, str] = os.environ
) -> tuple[int, int, int | None]:
    """(rank, world size, local rank): explicit options, else torchrun's RANK/WORLD_SIZE/
    LOCAL_RANK, else a SLURM array's task id and count, else a single rank."""
    local = None
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ConfigError("--rank and --world-size go together; give both or neither")
    elif "RANK" in env and "WORLD_SIZE" in env:
        rank, world_size = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
        local = _env_int(env, "LOCAL_RANK", rank)
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = _env_int(env, "SLURM_ARRAY_TASK_MIN", 0)
        rank = _env_int(env, "SLURM_ARRAY_TASK_ID") - first
        world_size = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    else:
        rank, world_size = 0, 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..world size-1 (world size {world_size})")
    return rank, world_size, local


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    """An integer environment variable set by torchrun or SLURM, or a ConfigError naming it."""
    value = env.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from None


def rank_device(device: str, local_rank: int | None) -> str:
    """A torchrun rank on a bare `cuda` device gets cuda:LOCAL_RANK."""
    return f"cuda:{local_rank}" if device == "cuda" and local_rank is not None else device


def default_workers(device: str, threads: int | None = None) -> int:
    """Local task processes: one per visible GPU on a bare `cuda` device, one on a chosen
    GPU, and on CPU one per core this build may use (`threads`, else its share of the node)."""
    if device == "cuda":
        return max(1, torch.cuda.device_count())
    return cpu_workers(threads) if torch.device(device).type == "cpu" else 1


def _whole(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    rank: int | None = None  # None (with world_size): torchrun's or SLURM's, else 0 of 1
    world_size: int | None = None
    workers: int | None = None  # None: one per visible GPU on a bare `cuda`; CPU: `threads`
    executor: str = "local"
    ray_address: str | None = None
    threads: int | None = None  # CPU cores used (task processes of 1 thread); None: its share

    def __post_init__(self):
        check_device(self.device)
        EXECUTORS[self.executor]
        for name, minimum in (("workers", 1), ("threads", 1), ("world_size", 1), ("rank", 0)):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), minimum)
        if self.resume and self.overwrite:
            raise ConfigError(
                "--resume and --overwrite contradict each other: --resume continues the corpus "
                "in --out, --overwrite replaces it; give one"
            )

    def resolve(self, env: Mapping[str, str] = os.environ) -> RunOptions:
        """These options with rank, world size, device and workers settled: explicit values,
        else the launcher's environment (torchrun, a SLURM array), else one process."""
        rank, world_size, local_rank = resolve_ranks(self.rank, self.world_size, env)
        device = rank_device(self.device, local_rank)
        workers = self.workers or default_workers(device, self.threads)
        return replace(self, rank=rank, world_size=world_size, device=device, workers=workers)

    def executor_options(self) -> ExecutorOptions:
        """What the executor needs (of resolved options)."""
        return ExecutorOptions(self.workers, self.progress, self.ray_address)
