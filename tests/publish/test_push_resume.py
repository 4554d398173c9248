"""A push in several commits: byte-identical to the corpus, cut off and resumed, killed and
resumed at thousands of files without resending what is there (the loopback Hub)."""

from __future__ import annotations

import json
import os

from afg_datasets.corpus.manifest import load_manifest
from tests.fake_hub import FakeHub
from tests.push_bench import push_killed_and_resumed, synthetic_corpus
from tests.samples import TOKEN, run_cli


def test_push_in_commits_is_byte_identical_and_points_croissant_into_the_repo(copy, tmp_path):
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        args = ["push", str(copy), "--repo-id", "afg-org/big", "--commit-files", "3"]
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        commits = hub.commits
        again = run_cli(*args, env=env)  # everything is there: only the last commit again
        assert again.returncode == 0, again.stderr
    manifest = load_manifest(copy)
    uploaded = hub.files[("afg-org/big", "main")]
    assert commits > len(manifest["files"]) // 3 and hub.commits == commits + 1
    for entry in manifest["files"]:
        assert uploaded[entry["path"]] == (copy / entry["path"]).read_bytes()
    croissant = json.loads(uploaded["croissant.json"])
    urls = [d["contentUrl"] for d in croissant["distribution"] if "contentUrl" in d]
    assert urls and all(u.startswith(f"{hub.url}/datasets/afg-org/big/resolve/main/") for u in urls)


def test_a_push_cut_off_by_a_closed_connection_is_one_line_and_resumes(copy, tmp_path):
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        hub.drop_after, hub.drops = 2, 3  # the third commit is cut off on every retry
        args = ["push", str(copy), "--repo-id", "afg-org/cut", "--commit-files", "3"]
        result = run_cli(*args, env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith("error: Hub request failed")
        assert (
            "Traceback" not in result.stderr
            and "manifest.json" not in hub.files[("afg-org/cut", "main")]
        )
        assert run_cli(*args, env=env).returncode == 0
    uploaded = hub.files[("afg-org/cut", "main")]
    for entry in load_manifest(copy)["files"]:
        assert uploaded[entry["path"]] == (copy / entry["path"]).read_bytes()


def test_a_killed_push_of_thousands_of_files_resumes_without_resending(tmp_path):
    root = tmp_path / "many"
    corpus_bytes = synthetic_corpus(root, 2_000, 512)
    with FakeHub() as hub:
        env = {**os.environ, **hub.env(TOKEN, tmp_path / "hf")}
        push_killed_and_resumed(root, hub, env, 0.5)
    uploaded = hub.files[("afg-org/many", "main")]
    files = sorted((root / "data").rglob("*.bin"))
    assert len(uploaded) == len(files) + 1
    for path in files:
        assert uploaded[path.relative_to(root).as_posix()] == path.read_bytes()
    assert hub.content_bytes <= 1.1 * corpus_bytes + 100  # + the manifest, twice at most
