"""`afg push` (hub.py) against the loopback Hub: the repo ends equal to the corpus."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.manifest import load_manifest
from afg_datasets.publish.hub import UploadFile, repo_changes
from tests.fake_hub import FakeHub
from tests.samples import TOKEN, run_cli

REPO = "afg-org/swap"
LOAD = """
import json, sys
from datasets import load_dataset
loaded = load_dataset(sys.argv[1], cache_dir=sys.argv[2])  # from the Hub, as a user would
print(json.dumps(sum(len(split) for split in loaded.values())))
"""
KEPT = {".gitattributes": b"*.parquet filter=lfs\n", "notes/extra.txt": b"mine", "plan.json": b"{}"}


def stale_files(store: dict[str, bytes]) -> dict[str, bytes]:
    """What another build of a corpus leaves in a repo: a shard of another task count (real
    parquet rows, which the card's globs would read), a tar, derived figures."""
    shard = next(path for path in sorted(store) if path.startswith("data/pgd/"))
    return {
        "data/pgd/train-00007-of-00009.parquet": store[shard],
        "wds/train/train-00007-of-00009.tar": b"x" * 1024,
        "model/genome_basis.safetensors": b"old",
        "bench/results.json": b"{}",
        "afs.png": b"png",
    }


def test_the_plan_deletes_only_what_the_corpus_owns():
    upload = [UploadFile("data/clean/train-00000-of-00001.parquet", 1)]
    held = ["data/clean/train-00000-of-00001.parquet", "data/clean/train-00000-of-00002.parquet"]
    plan = repo_changes([*held, *KEPT, "README.md", "wds/x.tar", "datax/y"], upload)
    assert plan.delete == ["data/clean/train-00000-of-00002.parquet", "wds/x.tar"]
    assert plan.kept == sorted([*KEPT, "datax/y"])


def test_a_push_leaves_the_repo_equal_to_the_corpus(copy, tmp_path):
    """In one commit and in resumable chunks: another build's files under the corpus's names
    go in the last commit, others stay and are named; `load_dataset(repo)` then reads exactly
    the manifest's rows."""
    push = ["push", str(copy), "--repo-id", REPO]
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        assert run_cli(*push, env=env).returncode == 0
        store = hub.files[(REPO, "main")]
        stale = stale_files(store)
        for commits in ([], ["--commit-files", "3"]):
            store.update({**stale, **KEPT})
            dry = run_cli(*push, *commits, "--dry-run", env=env)
            assert dry.returncode == 0, dry.stderr
            assert all(f"would delete  {path}" in dry.stdout for path in stale), dry.stdout
            assert set(stale) <= set(store), "a dry run changes nothing"
            result = run_cli(*push, *commits, env=env)
            assert result.returncode == 0, result.stderr
            assert not set(stale) & set(store) and set(KEPT) <= set(store), commits
            assert all(f"kept  {path}" in result.stdout for path in KEPT), result.stdout
        loaded = subprocess.run(
            [sys.executable, "-c", LOAD, REPO, str(tmp_path / "cache")],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    rows = [e["rows"] for e in load_manifest(copy)["files"] if e["path"].endswith(".parquet")]
    assert json.loads(loaded.stdout.splitlines()[-1]) == sum(rows), "the repo reads as the corpus"


def consistent(store: dict[str, bytes]) -> bool:
    """A repo shows a corpus only whole: no manifest, or one whose every file has its bytes."""
    if "manifest.json" not in store:
        return True
    listed = json.loads(store["manifest.json"])["files"]
    return all(
        e["path"] in store and hashlib.sha256(store[e["path"]]).hexdigest() == e["sha256"]
        for e in listed
    )


def test_a_push_cut_at_any_commit_never_shows_a_mixed_corpus(copy, tmp_path):
    """The repo holds corpus A; pushing B (same shard names, other bytes) in commits of 3 is
    cut after each commit in turn: every state is A whole, no manifest, or B whole."""
    from afg_datasets.building.encode import encode_corpus

    other = encode_corpus(Corpus.of(copy), tmp_path / "b", {"groups": 3}, progress=False).out
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        assert run_cli("push", str(copy), "--repo-id", REPO, env=env).returncode == 0
        first = dict(hub.files[(REPO, "main")])
        states, cut = [], 0
        while True:
            hub.files[(REPO, "main")] = dict(first)
            cut += 1
            hub.refuse_after = hub.commits + cut
            args = ["push", str(other), "--repo-id", REPO, "--commit-files", "3"]
            done = run_cli(*args, env=env)
            states.append(dict(hub.files[(REPO, "main")]))
            if done.returncode == 0:
                break
            assert done.returncode == 2 and "Traceback" not in done.stderr
    assert cut > 3 and all(consistent(state) for state in states)
    assert "manifest.json" not in states[0]  # the first commit retired A's manifest
    assert states[-1]["manifest.json"] == (other / "manifest.json").read_bytes()


ODD = ["data/", "data/../README.md", "data/.git/config", "wds/\x1b[31mred\nx.tar", "model//a"]


def test_names_from_a_listing_are_data(copy, tmp_path):
    """Odd names in a repo are never deleted, never printed raw, and end no push."""
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        hub.files[(REPO, "main")] = {name: b"theirs" for name in ODD}
        hub.repos[REPO] = {}
        for extra in (["--dry-run"], [], ["--commit-files", "3"]):
            done = run_cli("push", str(copy), "--repo-id", REPO, *extra, env=env)
            assert done.returncode == 0, done.stderr
            assert "\x1b" not in done.stdout and "5 name(s) no corpus file has" in done.stdout
            assert all(hub.files[(REPO, "main")][name] == b"theirs" for name in ODD)


def test_an_unreadable_commit_reply_is_one_line(copy, corpus, tmp_path):
    """The Hub's reply is data: a commitUrl huggingface_hub cannot parse ends the push (and
    push-recognizer) in one line saying that re-running resumes."""
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        hub.commit_url = "::not a url::"
        done = run_cli("push", str(copy), "--repo-id", REPO, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "the Hub's reply could not be read" in done.stderr.strip().splitlines()[-1]


def test_a_dry_run_that_cannot_list_the_repo_still_lists_its_uploads(copy, monkeypatch, capsys):
    from afg_datasets import printers
    from afg_datasets.publish import hub
    from afg_datasets.publish.client import PushError

    def unreachable(*args):
        raise PushError("Hub request failed: [Errno 111] Connection refused")

    monkeypatch.setattr(hub, "remote_files", unreachable)
    plan = hub.push(Corpus.of(copy), REPO, dry_run=True)
    assert plan.upload and plan.delete is None and "Connection refused" in plan.unlisted
    printers.upload(plan, REPO, dry_run=True)
    assert "HF_HUB_OFFLINE=1" in capsys.readouterr().out


def test_the_card_that_is_uploaded_is_the_card_that_is_checked(copy, monkeypatch):
    """Rendered once for the repo and validated before any request: a rendering without the
    metadata the Hub needs stops the push (a dry run too), whatever the card on disk says."""
    from huggingface_hub import DatasetCard

    from afg_datasets.publish import card, hub
    from afg_datasets.publish.client import PushError

    monkeypatch.setattr(card, "render_card", lambda *a, **k: DatasetCard("---\n---\n# bare\n"))
    monkeypatch.setattr(hub, "remote_files", lambda *a: pytest.fail("asked the Hub first"))
    with pytest.raises(PushError, match=f"the card rendered for {REPO}: metadata lacks"):
        hub.push(Corpus.of(copy), REPO, dry_run=True)
