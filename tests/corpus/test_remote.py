"""A Hub corpus is fetched by what its manifest lists (`corpus.remote`), into a plain folder of
the AFG cache that appears whole or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fake_hub import FakeHub
from tests.samples import TOKEN, run_cli

REPO = "afg-org/remote"


@pytest.fixture()
def hub_env(corpus, tmp_path):
    """The session corpus pushed to a loopback Hub; a fresh machine's environment."""
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        assert run_cli("push", str(corpus.out), "--repo-id", REPO, env=env).returncode == 0
        yield hub, {**env, "AFG_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}


def cached(env: dict) -> list[str]:
    from pathlib import Path

    folder = Path(env["AFG_CACHE_DIR"]) / "hub" / REPO.replace("/", "--")
    return sorted(p.name for p in folder.iterdir() if p.name != "refs") if folder.exists() else []


def test_a_repo_is_fetched_by_its_manifest_and_once(hub_env, corpus):
    hub, env = hub_env
    hub.files[(REPO, "main")]["other/big.bin"] = bytes(3_000_000)  # not the corpus's
    listed = sum(e["bytes"] for e in corpus.manifest["files"])
    assert run_cli("verify", REPO, env=env).returncode == 0
    assert "other/big.bin" not in hub.served and hub.served_bytes <= 1.05 * listed
    served = hub.served_bytes
    assert run_cli("verify", REPO, env=env).returncode == 0 and hub.served_bytes == served
    offline = run_cli("verify", REPO, env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0 and "OK" in offline.stdout  # from the cache


@pytest.mark.parametrize(
    "case, words",
    [
        ("no repo", "no such corpus folder, nor a readable Hub dataset repo"),
        ("no revision", "no such corpus folder, nor a readable Hub dataset repo"),
        ("no manifest", "holds no manifest.json; not an AFG corpus"),
        ("a listed file missing", "the repo lacks it"),
        ("a listed file of another size", "the repo holds"),
    ],
)
def test_a_repo_that_is_no_corpus_is_one_line_and_leaves_nothing_trusted(hub_env, case, words):
    hub, env = hub_env
    store = hub.files[(REPO, "main")]
    manifest = json.loads(store["manifest.json"])
    victim = manifest["files"][0]["path"]
    repo, revision = REPO, None
    if case == "no repo":
        repo = "afg-org/nothing"
    elif case == "no revision":
        revision = "no-such-branch"
    elif case == "no manifest":
        del store["manifest.json"]
    elif case == "a listed file missing":
        del store[victim]
    else:
        store[victim] += b"x"
    code = "import sys; from afg_datasets.corpus.corpus import Corpus; Corpus.open(*sys.argv[1:])"
    args = [repo, *([revision] if revision else [])]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert done.returncode != 0 and words in done.stderr.strip().splitlines()[-1]
    assert cached(env) == []  # no folder, no .partial: nothing a later open could trust


def test_processes_racing_to_fetch_one_corpus_all_get_it(hub_env):
    """DDP ranks opening one repo at once on one node: each fills its own partial folder, the
    first to finish wins, every one reads the corpus, nothing partial stays."""
    _, env = hub_env
    command = [sys.executable, "-m", "afg_datasets.cli", "verify", REPO]
    runs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    failed = [
        err.strip().splitlines()[-1:]
        for run, (_, err) in zip(runs, outputs, strict=True)
        if run.returncode
    ]
    assert not failed, failed
    assert len(cached(env)) == 1 and not cached(env)[0].endswith(".partial")


_WRITE_REF = """
import sys
from pathlib import Path
from afg_datasets.files import atomic_write
for _ in range(300):
    atomic_write(Path(sys.argv[1]), lambda handle: handle.write(b"commit"), shared=True)
"""


def test_processes_writing_one_cache_file_at_once_never_fail(tmp_path):
    """The fetch's last step, the ref a revision names, written by every racing rank: each
    writes its own partial file (0.9 shared one name: a rank removed or renamed another's)."""
    ref = tmp_path / "main"
    runs = [subprocess.Popen([sys.executable, "-c", _WRITE_REF, str(ref)]) for _ in range(3)]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
    assert ref.read_bytes() == b"commit" and sorted(os.listdir(tmp_path)) == ["main"]


@pytest.mark.parametrize(
    "args, what",
    [(["card"], "afg card"), (["afs"], "afg afs"), (["bench", "--quick"], "afg bench without")],
)
def test_commands_that_write_into_a_corpus_refuse_a_hub_repo(hub_env, args, what):
    """Their output would land in the AFG cache's fetched copy: one line, nothing fetched."""
    hub, env = hub_env
    done = run_cli(*args[:1], REPO, *args[1:], env=env)
    assert done.returncode == 2 and what in done.stderr and "is a Hub repo" in done.stderr
    assert cached(env) == [] and hub.served == []
