"""Plans, resume after SIGKILL, and scale-out: every route gives the reference build's bytes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from afg_datasets.building import build_corpus, finalize
from afg_datasets.building.options import RunOptions, default_workers, rank_device, resolve_ranks
from afg_datasets.building.threads import NUMERIC_THREADS
from afg_datasets.errors import ConfigError, OutputDirError

TASK_SIZE = 16  # 48 sources -> 3 tasks


@pytest.fixture(scope="module")
def tasked_config(small_config):
    return small_config.replace(sources_per_task=TASK_SIZE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tasked_config):
    out = tmp_path_factory.mktemp("ref") / "afg"
    return build_corpus(tasked_config, out, progress=False, workers=1)  # in this process


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tasked_config):
    path = tmp_path_factory.mktemp("cfg") / "tasked.yaml"
    path.write_text(yaml.safe_dump(tasked_config.to_dict(), sort_keys=False))
    return path


def shard_hashes(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {e["path"]: e["sha256"] for e in manifest["files"]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "afg_datasets.cli", *args]


def test_plan_has_seeded_tasks_and_one_shard_set_each(reference):
    plan = json.loads((reference.out / "plan.json").read_text())
    assert [(t["start"], t["stop"]) for t in plan["tasks"]] == [(0, 16), (16, 32), (32, 48)]
    assert len({t["seed"] for t in plan["tasks"]}) == 3
    assert reference.manifest["tasks"] == 3
    names = [p for p in shard_hashes(reference.out) if p.startswith("data/fgsm/train")]
    assert names == [f"data/fgsm/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert sorted(reference.tasks_run) == [0, 1, 2]


def test_rerun_resumes_without_rebuilding(reference, tasked_config):
    """A finished build run again is checked and read, never written: no file of the folder
    (manifest, stats and card included) changes, and no worker starts."""
    hashes = shard_hashes(reference.out)
    every = sorted(p for p in reference.out.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in every}
    again = build_corpus(tasked_config, reference.out, progress=False, resume=True)
    assert again.tasks_run == [] and again.stats["wall_seconds"] > 0
    after = sorted(p for p in reference.out.rglob("*") if p.is_file())
    assert after == every and {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in after} == before
    assert (
        shard_hashes(reference.out)
        == hashes
        == {e["path"]: e["sha256"] for e in again.manifest["files"]}
    )


def test_sigkill_then_resume_gives_identical_shards(reference, config_file, tmp_path):
    """Kill the builder hard after a random number of finished tasks (plus a random delay),
    resume with the same command: same bytes, no duplicate or missing key."""
    rng = random.Random(os.getpid())
    out = tmp_path / "killed"
    command = cli("build-shards", str(config_file), "--out", str(out), "--no-progress")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before_kill = rng.randint(0, 1)
    deadline = time.monotonic() + 300
    while (
        len(list(out.glob("tasks/0*.json"))) <= done_before_kill - 1
        or not (out / "plan.json").exists()
    ):
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert shard_hashes(out) == shard_hashes(reference.out)
    assert not list(out.rglob("*.partial"))
    check = subprocess.run(cli("verify", str(out)), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_static_ranks_then_finalize(reference, tasked_config, tmp_path):
    out = tmp_path / "ranks"
    first = build_corpus(tasked_config, out, progress=False, rank=1, world_size=2)
    assert first.tasks_run == [1] and not first.manifest
    with pytest.raises(OutputDirError, match=r"2 of 3 tasks are not complete \(0, 2\)"):
        finalize(out)
    last = build_corpus(tasked_config, out, progress=False, rank=0, world_size=2)
    assert last.tasks_run == [0, 2]
    assert shard_hashes(out) == shard_hashes(reference.out)
    assert finalize(out).manifest == last.manifest


def test_torchrun_two_cpu_ranks(reference, config_file, tmp_path):
    out = tmp_path / "torchrun"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    build = ["-m", "afg_datasets.cli", "build-shards", str(config_file), "--out", str(out)]
    result = subprocess.run([*launch, *build, "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    finalized = subprocess.run(cli("finalize", str(out)), capture_output=True, text=True)
    assert finalized.returncode == 0, finalized.stderr
    assert shard_hashes(out) == shard_hashes(reference.out)
    plan_ranks = json.loads((out / "stats.json").read_text())["tasks"]
    assert plan_ranks == {"count": 3, "ranks": 2}


def test_builds_on_one_node_share_the_cores(tmp_path, monkeypatch):
    from afg_datasets.building.threads import node_processes, registered, registry, thread_budget

    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    alone = thread_budget(1)
    registry().mkdir(parents=True)
    (registry() / "999999999").write_text("4")  # a build that died without cleaning up
    with registered(1):
        assert node_processes() == 1 and thread_budget(1) == alone
        neighbour = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (registry() / str(neighbour.pid)).write_text("1")  # another build beside us
            assert node_processes() == 2
            assert thread_budget(1) == max(1, cpus // 2)
        finally:
            neighbour.kill()
            neighbour.wait()
        assert thread_budget(1) == alone, "a finished neighbour gives its cores back"
    assert node_processes() == 0 and not (registry() / "999999999").exists()


def test_bytes_do_not_depend_on_the_thread_count(reference, tasked_config, tmp_path, monkeypatch):
    """--threads sets the cores (on CPU: task processes, the default --workers); every task
    computes on one thread whatever the count, so a pool's shards are the reference's (built
    in this process)."""
    from afg_datasets.building.threads import thread_budget

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert thread_budget(2, {"LOCAL_WORLD_SIZE": "2"}) == max(1, cpus // 4)
    assert thread_budget(1, {"OMP_NUM_THREADS": "3"}) == 3
    assert RunOptions(threads=4).resolve({}).workers == 4
    assert RunOptions(threads=4, workers=2).resolve({}).workers == 2
    out = tmp_path / "threads"
    result = build_corpus(tasked_config, out, progress=False, threads=2)  # 2 task processes
    assert sorted(result.tasks_run) == [0, 1, 2]
    assert json.loads((out / "stats.json").read_text())["torch_threads"] == [NUMERIC_THREADS]
    assert shard_hashes(out) == shard_hashes(reference.out)


def test_ray_local_cluster(reference, tasked_config, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = build_corpus(tasked_config, tmp_path / "ray", progress=False, executor="ray")
    finally:
        ray.shutdown()
    assert sorted(result.tasks_run) == [0, 1, 2]
    assert shard_hashes(tmp_path / "ray") == shard_hashes(reference.out)


def test_changed_config_is_refused_and_resume_needs_a_build(reference, tasked_config, tmp_path):
    with pytest.raises(OutputDirError, match="different corpus"):
        build_corpus(tasked_config.replace(seed=5), reference.out, progress=False)
    with pytest.raises(OutputDirError, match="no build to resume"):
        build_corpus(tasked_config, tmp_path / "new", progress=False, resume=True)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, (0, 1, None)),
        ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 1)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "2",
            },
            (3, 4, None),
        ),
    ],
)
def test_ranks_from_torchrun_and_slurm(env, expected):
    assert resolve_ranks(None, None, env) == expected
    assert resolve_ranks(1, 2, env) == (1, 2, None)
    assert rank_device("cuda", 1) == "cuda:1" and rank_device("cpu", 1) == "cpu"
    assert default_workers("cpu", 3) == 3


@pytest.mark.parametrize("rank, world", [(2, 2), (None, 2), (0, 0)])
def test_bad_ranks_are_named(rank, world):
    with pytest.raises(ConfigError, match="rank"):
        resolve_ranks(rank, world, {})
