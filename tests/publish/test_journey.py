"""The stranger's journey, walked as users walk it: machine A builds, fits a recognizer and
pushes both; machine B, knowing only the repo ids, reads, verifies, shows, re-encodes, benches,
fits and predicts. Each machine has its own HOME, HF_HOME and AFG cache; the loopback Hub
(tests/fake_hub.py) is between them. Every step is a subprocess: the `afg` CLI, or a script
using the public Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from afg_datasets.resources import resource_dir
from tests.fake_hub import FakeHub
from tests.samples import TOKEN, run_cli

pytestmark = pytest.mark.slow  # minutes of one worker (`-m 'not slow'` skips it)

LIMIT = 40  # source images: every split has records of every attack
CHEAP = {  # each encoder's cheapest real settings (the journey, not the science)
    "groupmap": [],
    "groupbasis": ["--set", "fit_images=16", "--set", "atlas_steps=8"],
    "groupviz": ["--set", "steps=2"],
}
# groupviz renders each batch's pictures from a seed of its batch: a picture computed alone
# differs from the stored one, so only its deterministic columns are compared
SAMPLED = {"groupviz": {"genome_images", "genome_mosaic"}}

# Machine B's Python: everything through the public API, from the repo ids alone.
READ = """
import json, sys
import numpy as np
from datasets import load_dataset
import afg_datasets
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.recognizer import Recognizer

repo, rec, sampled = sys.argv[1], sys.argv[2], set(json.loads(sys.argv[3]))
corpus = Corpus.open(repo).verify()
test = load_dataset(repo, split="test")  # as a user calls it, the card's configs
streamed = sum(1 for _ in load_dataset(repo, split="test", streaming=True))
ours = afg_datasets.dataloader(repo, split="test", batch_size=16)
rows = test.with_format("numpy")[:]
recognizer = Recognizer.from_pretrained(rec)
preds, genome = recognizer.genomes(rows["image"])  # the images as load_dataset gives them
stored = {name: rows[name] for name in corpus.genome_columns}
same = {n: bool(np.array_equal(genome[n], stored[n])) for n in stored if n not in sampled}
from_images = recognizer.predict(rows["image"])
from_genomes = recognizer.predict_genomes(stored, rows["pred"])
json.dump({
    "root": str(corpus.root),
    "records": corpus.records("test"),
    "loaded": len(test), "streamed": streamed, "dataloader": sum(len(b["key"]) for b in ours),
    "preds_equal": bool(np.array_equal(preds, rows["pred"])),
    "genome_equal": same,
    "class_agree": float(np.mean(from_images[1] == from_genomes[1])),
    "flag_agree": float(np.mean((from_images[0] > 0.5) == (from_genomes[0] > 0.5))),
    "keys": sorted(rows["key"].tolist()),
}, open(sys.argv[4], "w"))
"""

CROISSANT = """
import sys
import mlcroissant as mlc

print(sum(1 for _ in mlc.Dataset(jsonld=sys.argv[1]).records(record_set="all")))
"""


class Machine:
    """One user's machine: its own HOME, HF cache and AFG cache, the loopback Hub's address."""

    def __init__(self, home: Path, hub: FakeHub, afg_cache: Path | None = None):
        self.home = home
        self.env = {
            **os.environ,
            **hub.env(TOKEN, home / "hf"),
            "HOME": str(home),
            "AFG_CACHE_DIR": str(afg_cache or home / "afg-cache"),
        }

    def afg(self, *args: str) -> subprocess.CompletedProcess:
        done = run_cli(*args, env=self.env, cwd=self.home)
        assert done.returncode == 0, f"afg {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    def python(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            timeout=600,
        )

    def read(self, repo: str, rec: str, sampled: set[str] = frozenset()) -> dict:
        out = self.home / "read.json"
        done = self.python("-c", READ, repo, rec, json.dumps(sorted(sampled)), str(out))
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as running:
        yield running


@pytest.fixture(scope="module")
def machine_a(tmp_path_factory, hub, model_cache):
    """The builder (its AFG cache holds the session's trained target model)."""
    return Machine(tmp_path_factory.mktemp("machine-a"), hub, model_cache)


@pytest.fixture(scope="module")
def built(machine_a):
    """A's default corpus (activations) and its recognizer, pushed."""
    machine_a.afg("build-shards", "--limit", str(LIMIT), "--out", "afg", "--no-progress")
    return publish(machine_a, "afg", "org/afg")


def publish(machine: Machine, folder: str, repo: str) -> tuple[str, str]:
    """fit-recognizer, push (in commits of 4 files) and push-recognizer: the repo ids."""
    machine.afg("fit-recognizer", folder, "--out", f"{folder}-rec", "--epochs", "2")
    machine.afg("push", folder, "--repo-id", repo, "--commit-files", "4")
    machine.afg("push-recognizer", f"{folder}-rec", "--repo-id", f"{repo}-rec")
    return repo, f"{repo}-rec"


def check_read(found: dict, sampled: set[str] = frozenset()) -> None:
    records = found["records"]
    assert records and found["loaded"] == found["streamed"] == found["dataloader"] == records
    assert found["preds_equal"] and found["genome_equal"] and all(found["genome_equal"].values())
    if not sampled:  # the genome is the stored one: so is every prediction
        assert found["class_agree"] == 1.0 and found["flag_agree"] == 1.0


def test_a_published_corpus_is_read_verified_reencoded_benched_and_predicted_elsewhere(
    built, machine_a, hub, tmp_path
):
    repo, rec = built
    b = Machine(tmp_path / "machine-b", hub)
    b.home.mkdir()
    manifest = json.loads(hub.files[(repo, "main")]["manifest.json"])
    hub.files[(repo, "main")]["unlisted/big.bin"] = bytes(2_000_000)  # not the corpus's
    served = hub.served_bytes
    assert "OK" in b.afg("verify", repo).stdout
    fetched, served = hub.served_bytes - served, hub.served_bytes
    assert fetched <= 1.05 * sum(e["bytes"] for e in manifest["files"])
    assert "OK" in b.afg("verify", repo).stdout and hub.served_bytes == served  # cached
    found = b.read(repo, rec)
    check_read(found)
    root = Path(found["root"])
    key = next(k for k in found["keys"] if not k.endswith("-clean"))
    b.afg("show", repo, key, "--out", "show.png")
    assert (b.home / "show.png").stat().st_size > 0
    b.afg("encode", repo, "--encoder", "groupbasis", *CHEAP["groupbasis"], "--out", "gb")
    b.afg("verify", "gb")
    b.afg("bench", repo, "--quick", "--unseen", "none", "--out", "bench")
    assert json.loads((b.home / "bench" / "results.json").read_text())["results"]
    b.afg("fit-recognizer", repo, "--out", "rec", "--epochs", "1")
    counted = b.python("-c", CROISSANT, str(root / "croissant.json"))
    assert counted.returncode == 0, counted.stderr[-3000:]
    assert int(counted.stdout.split()[-1]) == sum(s["records"] for s in manifest["splits"].values())

    # A rebuilds with another task count and pushes again: B reads the new corpus only
    builder = yaml.safe_load((resource_dir("builders") / "digits.yaml").read_text())
    (machine_a.home / "small-tasks.yaml").write_text(
        yaml.safe_dump({**builder, "sources_per_task": 16})
    )
    machine_a.afg("build-shards", "small-tasks.yaml", "--limit", str(LIMIT), "--out", "afg2")
    machine_a.afg("push", "afg2", "--repo-id", repo, "--commit-files", "4")
    again = b.read(repo, rec)
    check_read(again)
    new_root = Path(again["root"])
    assert new_root != root and again["keys"] == found["keys"]  # same records, new shards
    listed = {e["path"] for e in json.loads((new_root / "manifest.json").read_text())["files"]}
    assert {p.relative_to(new_root).as_posix() for p in new_root.rglob("*.*")} >= listed
    held = set(hub.files[(repo, "main")])
    old = {e["path"] for e in manifest["files"]} - listed
    assert old and not old & held and listed <= held


@pytest.mark.parametrize("encoder", sorted(CHEAP))
def test_every_encoders_corpus_makes_the_journey(encoder, built, machine_a, hub, tmp_path):
    folder = f"afg-{encoder}"
    machine_a.afg("encode", "afg", "--encoder", encoder, *CHEAP[encoder], "--out", folder)
    repo, rec = publish(machine_a, folder, f"org/{encoder}")
    b = Machine(tmp_path / "machine-b", hub)
    b.home.mkdir()
    b.afg("verify", repo)
    check_read(b.read(repo, rec, SAMPLED.get(encoder, set())), SAMPLED.get(encoder, set()))
