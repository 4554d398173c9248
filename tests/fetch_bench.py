"""Opening a Hub corpus, measured: `python -m tests.fetch_bench CORPUS [CORPUS ...]`.

Each built corpus is pushed to the loopback Hub (tests/fake_hub.py), next to `--unlisted`
files of `--unlisted-bytes` each that are not the corpus's; then a fresh "machine" (its own
HOME, HF and AFG caches) runs `afg verify REPO` twice. Prints, per corpus, the bytes the Hub
served against the manifest's bytes, what the second open fetched, and the seconds of each
(median of `--repeats`, each repeat on a fresh machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.fake_hub import FakeHub
from tests.samples import run_cli

TOKEN = "hf_afgBENCHtoken0123456789"


def afg(env: dict, *args: str) -> float:
    start = time.perf_counter()
    done = run_cli(*args, env=env)
    if done.returncode:
        raise SystemExit(f"afg {' '.join(args)}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def measure(corpus: Path, unlisted: int, unlisted_bytes: int, repeats: int) -> dict:
    manifest = json.loads((corpus / "manifest.json").read_text())
    listed = sum(entry["bytes"] for entry in manifest["files"])
    runs = []
    with FakeHub() as hub, tempfile.TemporaryDirectory() as tmp:
        afg(hub.env(TOKEN, Path(tmp) / "a-hf"), "push", str(corpus), "--repo-id", "org/c")
        store = hub.files[("org/c", "main")]
        store.update({f"other/{i:04d}.bin": bytes(unlisted_bytes) for i in range(unlisted)})
        for repeat in range(repeats):
            home = Path(tmp) / f"b{repeat}"
            env = {
                **hub.env(TOKEN, home / "hf"),
                "HOME": str(home),
                "AFG_CACHE_DIR": str(home / "cache"),
            }
            before = hub.served_bytes
            first = afg(env, "verify", "org/c")
            fetched = hub.served_bytes - before
            second = afg(env, "verify", "org/c")
            runs.append((fetched, hub.served_bytes - before - fetched, first, second))
        repo_bytes = sum(len(data) for data in store.values())
    return {
        "corpus": str(corpus),
        "manifest_bytes": listed,
        "repo_bytes": repo_bytes,
        "repo_files": len(store),
        "fetched_bytes": runs[0][0],
        "fetched_over_manifest": round(runs[0][0] / listed, 4),
        "second_open_bytes": max(r[1] for r in runs),
        "first_open_s": round(statistics.median(r[2] for r in runs), 2),
        "second_open_s": round(statistics.median(r[3] for r in runs), 2),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", type=Path)
    parser.add_argument("--unlisted", type=int, default=2000)
    parser.add_argument("--unlisted-bytes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for corpus in args.corpora:
        print(json.dumps(measure(corpus, args.unlisted, args.unlisted_bytes, args.repeats)))


if __name__ == "__main__":
    main()
