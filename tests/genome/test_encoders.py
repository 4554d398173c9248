"""The encoder contract, read side: every command works on a corpus of every registered encoder
(`afg encode` makes it from one parent), and what a reader is told about a genome is its
encoder's own (its card text, how `show` and `afs` split its columns by layer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from afg_datasets.building.encode import encode_corpus
from afg_datasets.checks import setting_pairs
from afg_datasets.cli import app
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.facts import CorpusFacts
from afg_datasets.corpus.loader import stream
from afg_datasets.errors import ConfigError
from afg_datasets.evaluation.afs import afs
from afg_datasets.evaluation.bench import run_bench
from afg_datasets.evaluation.show import show
from afg_datasets.genome import ENCODERS
from afg_datasets.genome.text import encoder_tags
from afg_datasets.publish.card import refresh_card
from afg_datasets.resources import resource_dir

pytestmark = pytest.mark.slow  # minutes of one worker (`-m 'not slow'` skips it)

CHEAP = {  # each encoder's cheapest real settings: the contract, not the science
    "groupviz": {"steps": 2},
    "groupbasis": {"fit_images": 16, "atlas_steps": 8},
}


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def encoded(request, corpus, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "afg"
    encode_corpus(
        Corpus.of(corpus.out), out, {"encoder": name, **CHEAP.get(name, {})}, progress=False
    )
    return Corpus.open(out).verify()


def test_every_encoder_has_its_card_text():
    folder = resource_dir("cards") / "genome"
    assert sorted(p.stem for p in folder.glob("*.md")) == sorted(ENCODERS)


def test_every_command_works_on_every_encoders_corpus(encoded, tmp_path):
    manifest = encoded.manifest
    card = refresh_card(encoded).read_text()
    text = CorpusFacts.parse(manifest).encoder_text  # the encoder's own words, in its card
    shown = [text[part] for part in ("summary", "settings", "seeds", "arrays")]
    assert all(shown) and all(part in card for part in shown) and text["gradient"]
    assert all(f"- {tag}\n" in card for tag in encoder_tags(text))
    keys = encoded.table("test", ["key"]).column("key").to_pylist()
    key = next(k for k in keys if not k.endswith("-clean"))
    assert show(encoded, key, tmp_path / "show.png").stat().st_size > 0
    report = afs(encoded)
    assert all(len(curve) == len(encoded.layers) for curve in report["curves"]["genome"].values())
    bench = run_bench(encoded, tmp_path / "b", quick=True, methods=["afg"], unseen="none")
    assert {row["method"] for row in bench["results"]} == {"afg"}
    records = 0
    for batch in stream(encoded, "test", batch_size=64):
        assert set(encoded.genome_columns) <= set(batch)
        records += len(batch["key"])
    assert records == encoded.records("test")


def test_layer_arrays_split_every_genome_number_by_layer(encoded):
    """What `afs` and `show` read per layer is all of the genome, each number once."""
    table = encoded.table("test", encoded.genome_columns)
    columns = {n: np.asarray(table.column(n).to_pylist(), np.float32) for n in table.column_names}
    arrays = ENCODERS[encoded.encoder].layer_arrays(columns, encoded.layers)
    assert list(arrays) == encoded.layers
    total = sum(a[0].size for found in arrays.values() for a in found)
    assert total == sum(c[0].size for c in columns.values())
    assert all(found[0].ndim == 4 for found in arrays.values())  # maps first, [N, K, S, S]


def test_activations_keeps_a_small_layer_at_its_own_size(corpus, tmp_path):
    """Format 1.4: pooling up to a larger grid only repeats values."""
    out = tmp_path / "act"
    encode_corpus(Corpus.of(corpus.out), out, {"encoder": "activations", "size": 8}, progress=False)
    opened = Corpus.open(out)
    types = opened.manifest["features"]["types"]
    for layer in opened.manifest["layers"]:
        column = "genome_act_" + layer["name"].replace(".", "_")
        size = min(8, layer["height"])
        assert types[column]["shape"][1:] == [size, size], json.dumps(types[column])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--encoder", "activations", "--set", "steps=3"], "genome.steps: not a setting of"),
        (["--encoder", "groupviz", "--set", "steps=abc"], "genome.steps"),
        (["--set", "steps"], "expected NAME=VALUE"),
    ],
)
def test_encode_takes_any_setting_of_its_encoder_and_names_a_bad_one(corpus, tmp_path, args, named):
    result = CliRunner().invoke(app, ["encode", str(corpus.out), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and named in result.output
    assert not (tmp_path / "manifest.json").exists()


@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_set_option_is_settings_or_one_config_error(values):
    try:
        settings = setting_pairs(values)
    except ConfigError as err:
        assert "\n" not in str(err) and "NAME=VALUE" in str(err)
    else:
        assert set(settings) == {v.split("=", 1)[0] for v in values}
