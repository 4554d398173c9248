"""`corpus.Corpus`: the one object a command reads a corpus through. Opened once and verified
once per command (counted with spies), its files and configs the only rules for which files
make a split or a config."""

from __future__ import annotations

import ast
import json
from collections import Counter

import pytest
from huggingface_hub import constants
from typer.testing import CliRunner

from afg_datasets.cli import app
from afg_datasets.corpus import corpus as corpus_module
from afg_datasets.corpus import verify
from afg_datasets.corpus.corpus import DEFAULT_CONFIG, Corpus
from afg_datasets.corpus.loader import dataloader
from afg_datasets.errors import CorpusError
from tests.samples import PACKAGE


@pytest.fixture()
def spy(monkeypatch):
    """Counts: corpora opened, manifests read, whole verifications, files checked."""
    counts: Counter[str] = Counter()

    def counting(name, real):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)

        return wrapper

    real_open = Corpus.open.__func__
    monkeypatch.setattr(Corpus, "open", classmethod(counting("open", real_open)))
    monkeypatch.setattr(
        corpus_module, "load_manifest", counting("manifest", corpus_module.load_manifest)
    )
    monkeypatch.setattr(verify, "check_files", counting("verify", verify.check_files))
    monkeypatch.setattr(corpus_module, "check_entry", counting("file", corpus_module.check_entry))
    return counts


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_opens_and_verifies_a_corpus_once(corpus, copy, tmp_path, spy, monkeypatch):
    keys = Corpus.open(corpus.out).table("test", ["key"]).column("key").to_pylist()
    key = next(k for k in keys if not k.endswith("-clean"))
    spy.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # push --dry-run: no request
    commands = {
        "show": ["show", corpus.out, key, "--out", tmp_path / "show.png"],
        "fit-recognizer": ["fit-recognizer", corpus.out, "--out", tmp_path / "r", "--epochs", 1],
        "push": ["push", corpus.out, "--repo-id", "afg-org/digits", "--dry-run"],
        "verify": ["verify", corpus.out],
    }
    for name, args in commands.items():
        invoke(*args)
        assert (spy["open"], spy["manifest"], spy["verify"]) == (1, 1, 1), name
        spy.clear()
    invoke("card", copy)
    assert (spy["open"], spy["manifest"], spy["verify"]) == (1, 1, 0)
    spy.clear()
    opened = Corpus.open(corpus.out)
    test_files = opened.paths(split="test")
    spy.clear()
    batches = dataloader(opened, split="test", batch_size=64)
    assert sum(len(b["key"]) for b in batches) == opened.records("test")
    assert (spy["open"], spy["manifest"], spy["verify"]) == (0, 0, 0)
    assert spy["file"] == len(test_files) < len(opened.files())  # its shards, once each


def test_the_bench_opens_and_verifies_once_and_the_card_embeds_its_verdict(copy, spy):
    """`afg bench` (a quick run of the seen setting) and its card refresh share one Corpus;
    the bench writes its verdict into results.json and the card embeds that text."""
    invoke("bench", copy, "--quick", "--unseen", "none")
    assert (spy["open"], spy["manifest"], spy["verify"]) == (1, 1, 1)
    results = json.loads((copy / "bench" / "results.json").read_text())
    assert "AFG beats the raw-pixel control on" in results["verdict"]
    assert results["verdict"] in (copy / "README.md").read_text()


def test_cards_import_nothing_from_the_evaluation():
    for module in ("publish/card.py", "publish/croissant.py", "recognizer/card.py"):
        tree = ast.parse((PACKAGE / module).read_text())
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ]
        assert not [m for m in imported if m.startswith("afg_datasets.evaluation")], module


def test_no_shard_is_read_through_pyarrows_dataset_scanner():
    """`pq.read_table` and `pyarrow.dataset` release fragments on Arrow's worker threads; one
    holding datasets' ArrayND type released after the interpreter began to exit aborted `afg
    verify` (SIGABRT, 1 in ~40 runs, CI). Shards are read by `pq.ParquetFile` on the caller."""
    scanners = {"read_table", "ParquetDataset", "dataset", "write_dataset"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in scanners
                and ast.unparse(node.value) in ("pq", "pa", "ds", "pyarrow.parquet")
            ):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                if any(n.startswith("pyarrow.dataset") for n in names):
                    found.append(f"{path.name}:{node.lineno} imports pyarrow.dataset")
    assert not found, found


def test_files_select_by_format_split_and_config(corpus):
    opened = Corpus.open(corpus.out)
    everything = opened.files()
    assert everything == corpus.manifest["files"]
    parquet = opened.files("parquet")
    assert parquet and all(e["path"].startswith("data/") for e in parquet)
    fgsm = opened.paths(split="test", config="fgsm")
    assert {p.parent.name for p in fgsm} == {"clean", "fgsm"}
    assert all(p.name.startswith("test-") for p in fgsm)
    assert opened.paths(split="test", config=DEFAULT_CONFIG) == opened.paths(split="test")
    assert list(opened.configs) == [DEFAULT_CONFIG, *corpus.manifest["attacks"]]
    tars = opened.files("webdataset", "train")
    variants = {"clean", *corpus.manifest["attacks"]}  # format 1.6: a shard per variant
    assert {e["path"].split("/")[1] for e in tars} == variants
    assert all(e["path"].split("/")[2].startswith("train-") for e in tars)
    rows = sum(e["rows"] for e in opened.files("parquet", "test"))
    assert opened.table("test", ["key"]).num_rows == rows == opened.records("test")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"split": "dev"}, "unknown split 'dev'"), ({"config": "cw"}, "unknown config 'cw'")],
)
def test_an_unknown_split_or_config_is_one_error_naming_the_choices(corpus, kwargs, named):
    with pytest.raises(CorpusError, match=named) as caught:
        Corpus.open(corpus.out).files(**kwargs)
    assert "choose from" in str(caught.value) or "this corpus has all" in str(caught.value)


def test_verification_is_once_per_object_and_a_new_object_sees_damage(copy, spy):
    opened = Corpus.open(copy)
    assert opened.verify() is opened and opened.verify() is opened
    assert spy["verify"] == 1
    shard = opened.paths(split="test")[0]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    with pytest.raises(CorpusError, match="failed verification"):
        Corpus.open(copy).verify()


def test_a_missing_folder_is_one_error_naming_it(tmp_path):
    with pytest.raises(CorpusError, match="missing"):
        Corpus.open(tmp_path / "nothing")
