"""`afg bench-build`: crash safety, weak scaling, streaming memory and source scaling of real
builds.

Every figure comes from real `afg build-shards` processes (killed with SIGKILL, resumed, run
with 1 or 2 workers), never from a timed test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from afg_datasets.config import BuildConfig
from afg_datasets.corpus.corpus import Corpus, verify_corpus
from afg_datasets.errors import AFGError
from afg_datasets.layout import PLAN_FILE, STATS_FILE, TASKS_DIR, read_json
from afg_datasets.perf.device_bench import PRESETS, bench_device
from afg_datasets.perf.source_bench import source_scaling


class BenchError(AFGError):
    """A benchmark build failed."""


def _command(config: Path, out: Path, *extra: str) -> list[str]:
    build = ["build-shards", str(config), "--out", str(out), "--no-progress", *extra]
    return [sys.executable, "-m", "afg_datasets.cli", *build]


def _run(config: Path, out: Path, *extra: str, env: dict | None = None) -> dict[str, Any]:
    """One build to completion; its stats.json plus the process's own wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(_command(config, out, *extra), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BenchError(f"build into {out} failed:\n{done.stderr[-2000:]}")
    stats = read_json(out / STATS_FILE)
    return {**stats, "process_seconds": time.perf_counter() - start}


def _hashes(out: Path) -> dict[str, str]:
    return {e["path"]: e["sha256"] for e in Corpus.open(out).files()}


def _config_file(cfg: BuildConfig, directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def kill_resume(cfg: BuildConfig, points: int, seed: int, work: Path) -> dict[str, Any]:
    """Kill a build at `points` random moments, resume each, compare with an unkilled build."""
    config = _config_file(cfg, work, "kill")
    reference = _run(config, work / "reference")
    expected = _hashes(work / "reference")
    rng = random.Random(seed)
    runs = []
    for point in range(points):
        out = work / f"killed-{point}"
        kill_at = rng.uniform(0.05, 0.95) * reference["process_seconds"]
        proc = subprocess.Popen(
            _command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(kill_at)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_at_kill = len(list((out / TASKS_DIR).glob("0*.json")))
        _run(config, out)
        problems = verify_corpus(out)
        runs.append(
            {
                "kill_at_s": round(kill_at, 2),
                "killed_mid_build": killed,
                "tasks_done_at_kill": done_at_kill,
                "identical": _hashes(out) == expected and not problems,
                "verify_problems": problems,
            }
        )
    return {
        "points": points,
        "tasks": len(read_json(work / "reference" / PLAN_FILE)["tasks"]),
        "identical": sum(r["identical"] for r in runs),
        "killed_mid_build": sum(r["killed_mid_build"] for r in runs),
        "runs": runs,
    }


def _per_worker_rate(out: Path) -> list[float]:
    """Records/s of each worker over its own task time (first start to last finish)."""
    spans: dict[int, list] = {}
    for path in sorted((out / TASKS_DIR).glob("0*.json")):
        marker = read_json(path)
        records = sum(t["records"] for t in marker["tallies"].values())
        span = spans.setdefault(marker["worker"], [0, float("inf"), 0.0])
        span[0] += records
        span[1] = min(span[1], marker["started"])
        span[2] = max(span[2], marker["finished"])
    return [round(r / (end - start), 2) for r, start, end in spans.values()]


def weak_scaling(cfg: BuildConfig, limit: int, work: Path) -> dict[str, Any]:
    """1 worker on `limit` sources vs 2 workers on 2x as many, one torch thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one_cfg = _config_file(cfg.replace(limit=limit), work, "one")
    two_cfg = _config_file(cfg.replace(limit=2 * limit), work, "two")
    one = _run(one_cfg, work / "one", env=env)
    two = _run(two_cfg, work / "two", "--workers", "2", env=env)
    single = _per_worker_rate(work / "one")[0]
    pair = _per_worker_rate(work / "two")
    return {
        "single_worker_records_per_s": single,
        "two_workers_records_per_s_each": pair,
        "fraction_of_single": [round(r / single, 3) for r in pair],
        "end_to_end_records_per_s": {"one": one["records_per_s"], "two": two["records_per_s"]},
    }


def streaming_memory(cfg: BuildConfig, limit: int, work: Path) -> dict[str, Any]:
    """Peak RSS of a build of `limit` sources and of 4x as many."""
    peaks = {}
    for factor in (1, 4):
        config = _config_file(cfg.replace(limit=factor * limit), work, f"x{factor}")
        stats = _run(config, work / f"x{factor}")
        peaks[f"x{factor}"] = {"records": stats["records"], "peak_rss_mb": stats["peak_rss_mb"]}
    ratio = peaks["x4"]["peak_rss_mb"] / peaks["x1"]["peak_rss_mb"]
    return {**peaks, "ratio": round(ratio, 3)}


@dataclass(frozen=True)
class BenchSettings:
    limit: int  # source images per build (x1)
    points: int  # random kill points
    seed: int  # seed of the kill points
    source_images: int  # `source`: N of the N vs 10N folders (builds use --limit 64)
    device: str = "cpu"  # `device`: where the device check runs
    preset: str | None = None  # `device`: full or tiny (default: full on CUDA, else tiny)


BENCHES = {
    "kill": lambda cfg, s, work: kill_resume(cfg.replace(limit=s.limit), s.points, s.seed, work),
    "scaling": lambda cfg, s, work: weak_scaling(cfg, s.limit, work),
    "memory": lambda cfg, s, work: streaming_memory(cfg, s.limit, work),
    "source": lambda cfg, s, work: source_scaling(s.source_images, 64, work),
    "device": lambda cfg, s, work: bench_device(s.device, s.preset or _preset(s.device), work),
}


def _preset(device: str) -> str:
    return "full" if device.startswith("cuda") else "tiny"


def bench_build(
    cfg: BuildConfig, which: list[str], settings: BenchSettings, work: Path | None
) -> dict[str, Any]:
    """Run the named benchmarks (kill, scaling, memory, source) in a temporary directory."""
    unknown = sorted(set(which) - set(BENCHES))
    if unknown:
        raise BenchError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
    if settings.preset is not None and settings.preset not in PRESETS:
        raise BenchError(f"unknown --preset {settings.preset!r}; choose from {', '.join(PRESETS)}")
    results: dict[str, Any] = {"config_hash": cfg.config_hash(), "limit": settings.limit}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name in which:
            directory = Path(tmp) / name
            directory.mkdir()
            results[name] = BENCHES[name](cfg, settings, directory)
    return results
