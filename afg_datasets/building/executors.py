"""Executors run one rank's tasks: in this process, in N local processes, or as Ray tasks.

Which tasks a process takes comes from static ranks (torchrun, SLURM arrays or --rank and
--world-size: rank r takes tasks r, r+W, ...). Launching, placement and retries are left to
the engines clusters already run: a process pool, torchrun, SLURM, Ray.

The contract (`Executor`): given a `WorkerSpec`, this rank's tasks, how to run them
(`ExecutorOptions`) and, for in-process use, the planning process's `BuildContext`, run
every task (each idempotent: `complete_task`) and return the ids of those that ran.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from afg_datasets.building.context import BuildContext, WorkerSpec
from afg_datasets.building.plan import Task
from afg_datasets.building.task import complete_task
from afg_datasets.building.threads import pin_numeric_threads
from afg_datasets.errors import ConfigError
from afg_datasets.registry import Registry

RAY_RETRIES = 3


def worker_devices(device: str, workers: int) -> list[str]:
    """One device per local worker: on a bare `cuda`, one visible GPU each (round robin)."""
    if device == "cuda":
        count = torch.cuda.device_count()
        return [f"cuda:{i % count}" for i in range(workers)]
    return [device] * workers


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int = 1  # local processes (the local executor), each computing on one thread
    progress: bool = True
    ray_address: str | None = None  # the ray executor; None: start a local cluster


def run_local(
    spec: WorkerSpec, tasks: list[Task], opts: ExecutorOptions, ctx: BuildContext | None
) -> list[int]:
    """In this process, or (--workers N, more than one task) in N spawned processes taking
    tasks as they free up."""
    if min(opts.workers, len(tasks)) > 1:
        return _run_pool(spec, tasks, opts)
    ctx = ctx or spec.context()
    ran = []
    pin_numeric_threads()
    for task in tqdm(tasks, desc="tasks", unit="task", disable=not opts.progress):
        if complete_task(ctx, task, spec.num_tasks):
            ran.append(task.id)
    return ran


def _run_pool(spec: WorkerSpec, tasks: list[Task], opts: ExecutorOptions) -> list[int]:
    context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads and CUDA
    devices = context.Queue()
    for device in worker_devices(spec.device, opts.workers):
        devices.put(device)
    ran = []
    with ProcessPoolExecutor(
        min(opts.workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(spec, devices),
    ) as pool:
        futures = {pool.submit(_run_in_worker, task): task for task in tasks}
        done = as_completed(futures)
        for future in tqdm(done, total=len(futures), desc="tasks", disable=not opts.progress):
            if future.result():
                ran.append(futures[future].id)
    return sorted(ran)


_worker: tuple[WorkerSpec, BuildContext] | None = None  # one per pool process, set up once


def _init_worker(spec: WorkerSpec, devices) -> None:
    global _worker
    pin_numeric_threads()
    _worker = spec, spec.context(devices.get())


def _run_in_worker(task: Task) -> bool:
    spec, ctx = _worker
    return complete_task(ctx, task, spec.num_tasks)


def run_ray(
    spec: WorkerSpec, tasks: list[Task], opts: ExecutorOptions, ctx: BuildContext | None
) -> list[int]:
    """One Ray task per shard task (one GPU each on CUDA), retried on failure."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'afg-datasets[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=opts.ray_address, log_to_driver=False)
    cuda = torch.device(spec.device).type == "cuda"
    remote = ray.remote(
        num_cpus=1, num_gpus=1 if cuda else 0, max_retries=RAY_RETRIES, retry_exceptions=True
    )(_ray_task)
    device = "cuda" if cuda else "cpu"  # Ray assigns the GPU: it is cuda:0 inside the task
    results = ray.get([remote.remote(spec, task, device) for task in tasks])
    return [task.id for task, ran in zip(tasks, results, strict=True) if ran]


def _ray_task(spec: WorkerSpec, task: Task, device: str) -> bool:
    pin_numeric_threads()
    return complete_task(spec.context(device), task, spec.num_tasks)


Executor = Callable[[WorkerSpec, list[Task], ExecutorOptions, BuildContext | None], list[int]]
EXECUTORS: Registry[Executor] = Registry("executor", {"local": run_local, "ray": run_ray})
