"""Executors run one rank's tasks: in this process, in N local processes, or as Ray tasks.

Which tasks a process takes comes from static ranks (torchrun, SLURM arrays or --rank and
--world-size: rank r takes tasks r, r+W, ...). Launching, placement and retries are left to
the engines clusters already run: a process pool, torchrun, SLURM, Ray.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from afg_datasets.build import Builder, RunOptions, complete_task
from afg_datasets.config import BuildConfig
from afg_datasets.errors import ConfigError
from afg_datasets.plan import Task
from afg_datasets.registry import Registry

RAY_RETRIES = 3


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
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        rank = int(env["SLURM_ARRAY_TASK_ID"]) - first
        world_size = int(env["SLURM_ARRAY_TASK_COUNT"])
    else:
        rank, world_size = 0, 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..world size-1 (world size {world_size})")
    return rank, world_size, local


def rank_device(device: str, local_rank: int | None) -> str:
    """A torchrun rank on a bare `cuda` device gets cuda:LOCAL_RANK."""
    return f"cuda:{local_rank}" if device == "cuda" and local_rank is not None else device


def default_workers(device: str) -> int:
    """One local worker per visible GPU on a bare `cuda` device, else one."""
    return max(1, torch.cuda.device_count()) if device == "cuda" else 1


def worker_devices(device: str, workers: int) -> list[str]:
    """One device per local worker: on a bare `cuda`, one visible GPU each (round robin)."""
    if device == "cuda":
        count = torch.cuda.device_count()
        return [f"cuda:{i % count}" for i in range(workers)]
    return [device] * workers


def run_local(builder: Builder, tasks: list[Task], num_tasks: int, opts: RunOptions) -> list[int]:
    """In this process, or (--workers N) in N spawned processes taking tasks as they free up."""
    if opts.workers > 1:
        return _run_pool(builder, tasks, num_tasks, opts)
    bar = tqdm(tasks, desc="tasks", unit="task", disable=not opts.progress)
    return [task.id for task in bar if complete_task(builder, task, num_tasks)]


def _run_pool(builder: Builder, tasks: list[Task], num_tasks: int, opts: RunOptions) -> list[int]:
    context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads and CUDA
    devices = context.Queue()
    for device in worker_devices(str(builder.device), opts.workers):
        devices.put(device)
    threads = max(1, (os.cpu_count() or 1) // opts.workers)
    ran = []
    with ProcessPoolExecutor(
        opts.workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(builder.cfg, builder.out, devices, threads),
    ) as pool:
        futures = {pool.submit(_run_in_worker, task, num_tasks): task for task in tasks}
        done = as_completed(futures)
        for future in tqdm(done, total=len(futures), desc="tasks", disable=not opts.progress):
            if future.result():
                ran.append(futures[future].id)
    return sorted(ran)


_worker_builder: Builder | None = None  # one per worker process, set up once by the pool


def _init_worker(cfg: BuildConfig, out: Path, devices, threads: int) -> None:
    global _worker_builder
    torch.set_num_threads(threads)
    _worker_builder = Builder(cfg, out, devices.get(), progress=False)
    _worker_builder.setup(model_dir=out / "model")


def _run_in_worker(task: Task, num_tasks: int) -> bool:
    return complete_task(_worker_builder, task, num_tasks)


def run_ray(builder: Builder, tasks: list[Task], num_tasks: int, opts: RunOptions) -> list[int]:
    """One Ray task per shard task (one GPU each on CUDA), retried on failure."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'afg-datasets[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=opts.ray_address, log_to_driver=False)
    cuda = builder.device.type == "cuda"
    remote = ray.remote(
        num_cpus=1, num_gpus=1 if cuda else 0, max_retries=RAY_RETRIES, retry_exceptions=True
    )(_ray_task)
    device = "cuda" if cuda else "cpu"
    refs = [remote.remote(builder.cfg, str(builder.out), t, num_tasks, device) for t in tasks]
    results = ray.get(refs)
    return [task.id for task, ran in zip(tasks, results, strict=True) if ran]


def _ray_task(cfg: BuildConfig, out: str, task: Task, num_tasks: int, device: str) -> bool:
    builder = Builder(cfg, Path(out), device, progress=False)
    builder.setup(model_dir=Path(out) / "model")
    return complete_task(builder, task, num_tasks)


Executor = Callable[[Builder, list[Task], int, RunOptions], list[int]]
EXECUTORS: Registry[Executor] = Registry("executor", {"local": run_local, "ray": run_ray})
