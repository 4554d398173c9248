"""How (not what) to build: run options, validated on creation so a bad library call writes
nothing. None of these change a corpus's bytes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afg_datasets.building.executors import EXECUTORS, ExecutorOptions
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


def _whole(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    rank: int = 0
    world_size: int = 1
    workers: int = 1
    executor: str = "local"
    ray_address: str | None = None
    threads: int | None = None  # torch/OpenMP threads per process; None: threads.thread_budget

    def __post_init__(self):
        check_device(self.device)
        EXECUTORS[self.executor]
        _whole("workers", self.workers, 1)
        if self.threads is not None:
            _whole("threads", self.threads, 1)
        _whole("world_size", self.world_size, 1)
        _whole("rank", self.rank, 0)
        if self.resume and self.overwrite:
            raise ConfigError(
                "--resume and --overwrite contradict each other: --resume continues the corpus "
                "in --out, --overwrite replaces it; give one"
            )
        if self.rank >= self.world_size:
            raise ConfigError(
                f"rank {self.rank} is not in 0..world size-1 (world size {self.world_size})"
            )

    def executor_options(self) -> ExecutorOptions:
        return ExecutorOptions(self.workers, self.progress, self.ray_address, self.threads)
