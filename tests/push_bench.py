"""The resumable push, measured: `python -m tests.push_bench [--files 5000] [--size 4096]`.

A synthetic corpus of `files` random files goes to the loopback Hub (tests/fake_hub.py) in
commits of 100 files; the push is killed with SIGKILL once half of its commits are in and run
again to the end. Prints the bytes the Hub received: file contents, and every request body on
the wire, against the corpus and against the same push uninterrupted (the loopback Hub takes
every file inline, base64 in the commit, so the wire carries 4/3 of the contents even without a
kill; the real Hub takes binary files raw through LFS), and whether the repo ends
byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.fake_hub import FakeHub

TOKEN = "hf_afgBENCHtoken0123456789"

PUSH_SCRIPT = """
import sys
from pathlib import Path
from afg_datasets.publish.client import (
    HfApi, UploadFile, ensure_repo, hub_timeouts, upload_in_commits
)
root = Path(sys.argv[1])
data = [UploadFile(p.relative_to(root).as_posix(), p.stat().st_size)
        for p in sorted((root / "data").rglob("*.bin"))]
sha = {}
with hub_timeouts(30):
    ensure_repo(HfApi(), "afg-org/many", "dataset", False, None)
    upload_in_commits(root, "afg-org/many", data, ["manifest.json"], sha, {}, None, 100)
"""


def synthetic_corpus(root: Path, files: int, size: int) -> int:
    """`files` random files under data/ plus a manifest.json; returns their bytes."""
    rng = np.random.default_rng(0)
    for i in range(files):
        path = root / "data" / f"{i % 10}" / f"{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(size))
    (root / "manifest.json").write_text("{}")
    return files * size


def push_killed_and_resumed(root: Path, hub: FakeHub, env: dict, at: float) -> dict:
    """Push `root` in commits of 100 files, SIGKILL it once `at` of the commits are in, run it
    again to the end; what reached the hub."""
    total_commits = -(-len(list((root / "data").rglob("*.bin"))) // 100) + 1
    command = [sys.executable, "-c", PUSH_SCRIPT, str(root)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    while hub.commits < at * total_commits and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = hub.commits
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"killed_at_commit": killed_at, "commits": total_commits}


def measure(files: int = 5000, size: int = 4096, at: float = 0.5) -> dict:
    """One killed-and-resumed push of `files` random files of `size` bytes, the kill once a
    share `at` of the commits are in, beside the same push uninterrupted."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "corpus"
        corpus_bytes = synthetic_corpus(root, files, size)
        start = time.perf_counter()
        with FakeHub() as reference:  # the same push, uninterrupted
            env = {**os.environ, **reference.env(TOKEN, Path(tmp) / "hf")}
            command = [sys.executable, "-c", PUSH_SCRIPT, str(root)]
            subprocess.run(command, env=env, check=True, capture_output=True)
        with FakeHub() as hub:
            env = {**os.environ, **hub.env(TOKEN, Path(tmp) / "hf")}
            kill = push_killed_and_resumed(root, hub, env, at)
        seconds = time.perf_counter() - start
        uploaded = hub.files[("afg-org/many", "main")]
        identical = all(
            uploaded.get(p.relative_to(root).as_posix()) == p.read_bytes()
            for p in (root / "data").rglob("*.bin")
        )
    return {
        "files": files,
        "corpus_bytes": corpus_bytes,
        **kill,
        "content_bytes_received": hub.content_bytes,
        "content_ratio": round(hub.content_bytes / corpus_bytes, 4),
        "wire_bytes_received": hub.wire_bytes,
        "wire_ratio": round(hub.wire_bytes / corpus_bytes, 4),
        "uninterrupted_wire_bytes": reference.wire_bytes,
        "wire_ratio_vs_uninterrupted": round(hub.wire_bytes / reference.wire_bytes, 4),
        "repo_identical": identical and len(uploaded) == files + 1,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--at", type=float, default=0.5, help="share of commits before the kill")
    args = parser.parse_args()
    print(json.dumps(measure(args.files, args.size, args.at), indent=2))


if __name__ == "__main__":
    main()
