"""Fuzz, by class: hostile YAML configs, tar headers of a bare-URL stream, saved-recognizer
folders and CLI arguments. Each example ends in the correct result or in one of the package's
own errors. CI runs 80 examples per target; `AFG_FUZZ_EXAMPLES=2000 pytest tests/safety/test_fuzz.py
--hypothesis-show-statistics` is the benchmark run."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from afg_datasets.cli import app
from afg_datasets.config import BuildConfig, load_config
from afg_datasets.corpus.loader import stream
from afg_datasets.corpus.tarshards import MAX_BLOCKING
from afg_datasets.errors import AFGError, ConfigError, CorpusError, ModelError

EXAMPLES = int(os.environ.get("AFG_FUZZ_EXAMPLES", "80"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- YAML configs ----------------------------------------------------------------------------

KEYS = ["name", "seed", "limit", "batch_size", "model", "attacks", "genome", "source", "splits"]
scalars = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.integers(), st.text(max_size=4)), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


def _aliases(depth: int, width: int) -> str:
    lines = ['a0: &a0 ["x"]']
    for level in range(1, depth + 1):
        items = ",".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{items}]")
    return "\n".join(lines) + f"\nname: *a{depth}\n"


yaml_texts = st.one_of(
    values.map(lambda v: yaml.safe_dump({"config": v} if not isinstance(v, dict) else v)),
    st.builds(_aliases, st.integers(1, 12), st.integers(1, 12)),
    st.integers(1, 3000).map(lambda n: "name: " + "[" * n + "]" * n),
    st.text(max_size=200),
)


@FUZZ
@given(text=yaml_texts)
def test_any_yaml_config_is_a_config_or_one_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "fuzz.yaml"
    path.write_text(text)
    try:
        assert isinstance(load_config(str(path)), BuildConfig)
    except ConfigError as err:
        assert "\n" not in str(err).strip() or str(err).startswith(str(path))


# --- tar headers in URL mode ----------------------------------------------------------------


def _shard(records: int) -> tuple[bytes, list[str]]:
    buffer = io.BytesIO()
    keys = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(records):
            key = f"r{i:03d}"
            keys.append(key)
            meta = {
                "key": key,
                "label": i % 3,
                "is_adversarial": False,
                "attack": "clean",
                "mixed_label": [1, 0, 0, 0],
            }
            genome = io.BytesIO()
            np.save(genome, np.full((2, 3), i, np.float16), allow_pickle=False)
            for name, data in (
                (f"{key}.json", json.dumps(meta).encode()),
                (f"{key}.genome_spatial.npy", genome.getvalue()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), keys


SHARD, SHARD_KEYS = _shard(6)
HEADERS = [
    i * 512 for i in range(len(SHARD) // 512) if SHARD[i * 512 + 257 : i * 512 + 262] == b"ustar"
]
damage = st.one_of(
    st.tuples(
        st.just("size"),
        st.sampled_from(HEADERS),
        st.integers(0, 11),
        st.binary(min_size=1, max_size=1),
    ),
    st.tuples(
        st.just("type"),
        st.sampled_from(HEADERS),
        st.just(156),
        st.sampled_from(
            [b"1", b"2", b"3", b"5", b"6", b"7", b"S", b"L", b"K", b"x", b"g", b"\xff"]
        ),
    ),
    st.tuples(st.just("zero-tail"), st.integers(0, len(SHARD)), st.just(0), st.just(b"")),
    st.tuples(st.just("cut"), st.integers(0, len(SHARD)), st.just(0), st.just(b"")),
    st.tuples(st.just("extend"), st.integers(1, 40000), st.just(0), st.just(b"")),
)


def _damaged(kind: str, at: int, offset: int, byte: bytes) -> bytes:
    """SHARD with one hit; `+checksum`: the header's checksum made right again, as a hostile
    writer (not line noise) would."""
    data = bytearray(SHARD)
    if kind.startswith("size"):
        data[at + 124 + offset : at + 125 + offset] = byte
    elif kind.startswith("type"):
        data[at + offset : at + offset + 1] = byte
    elif kind == "zero-tail":
        data[at:] = bytes(len(data) - at)
    elif kind == "cut":
        del data[at:]
    else:
        data += bytes(at)
    if kind.endswith("+checksum"):
        header = data[at : at + 512]
        header[148:156] = b" " * 8
        data[at + 148 : at + 156] = b"%06o\0 " % sum(header)
    return bytes(data)


def _reference(data: bytes) -> list[tuple[str, int, tuple]] | None:
    """What the bytes hold, read by Python's tarfile member by member (the oracle): (key,
    label, genome mean) per record; None where tarfile cannot read them."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    except (tarfile.TarError, AttributeError):
        return None
    records = []
    for name, payload in members.items():
        if name.endswith(".json"):
            key = name[: -len(".json")]
            genome = np.load(io.BytesIO(members[f"{key}.genome_spatial.npy"]))
            values = tuple(genome.astype(np.float32).ravel().tolist())
            records.append((key, json.loads(payload)["label"], values))
    return records


@FUZZ
@given(hit=damage)
def test_a_damaged_shard_in_url_mode_gives_what_its_bytes_hold_or_one_corpus_error(
    tmp_path_factory, hit
):
    """Without a manifest there is no hash: damage that leaves a well-formed archive (a tail
    zeroed exactly at a record boundary is a valid shorter shard) reads as what it holds;
    anything else is a CorpusError, never fewer records than the bytes say."""
    data = _damaged(*hit)
    path = tmp_path_factory.mktemp("tar") / "shard.tar"
    path.write_bytes(data)
    try:
        records = list(stream([str(path)]))
    except CorpusError:
        return
    found = [
        (r["key"], int(r["label"]), tuple(r["genome_spatial"].numpy().ravel().tolist()))
        for r in records
    ]
    assert found == _reference(data), hit
    blocks = range(len(data) // 512)
    last = max((i * 512 for i in blocks if data[i * 512 : i * 512 + 512].strip(b"\0")), default=0)
    assert found, "an archive of no member (all zeros) is refused"
    # nothing but end blocks and padding to a record of some blocking factor (tar -b N) after
    assert len(data) - last <= MAX_BLOCKING * 512 + 1024, hit


# --- saved recognizer folders ----------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_recognizer(corpus, tmp_path_factory):
    from afg_datasets.recognizer import Recognizer
    from afg_datasets.recognizer.training import TrainConfig

    path = tmp_path_factory.mktemp("recognizer") / "rec"
    Recognizer.fit(corpus.out, train_cfg=TrainConfig(epochs=1)).save(path)
    return path


FIELDS = [
    ("manifest", "config", "genome", "groups"),
    ("manifest", "config", "genome", "size"),
    ("manifest", "config", "genome", "nmf_iters"),
    ("manifest", "config", "genome", "encoder"),
    ("manifest", "seeds", "nmf"),
    ("manifest", "layers"),
    ("manifest", "model"),
    ("manifest", "features"),
    ("inputs",),
]


@FUZZ
@given(field=st.sampled_from(FIELDS), value=values)
def test_a_tampered_recognizer_folder_loads_or_is_one_error(
    saved_recognizer, tmp_path_factory, field, value
):
    from afg_datasets.recognizer import Recognizer

    folder = tmp_path_factory.mktemp("r") / "rec"
    shutil.copytree(saved_recognizer, folder)
    info = json.loads((folder / "recognizer.json").read_text())
    target = info
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    (folder / "recognizer.json").write_text(json.dumps(info, default=str))
    try:
        recognizer = Recognizer.from_pretrained(folder)
        recognizer.predict(np.zeros((2, 32, 32, 1), np.uint8))
    except AFGError:
        return


# --- CLI arguments ----------------------------------------------------------------------------

bad_numbers = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=10**12),
    st.sampled_from(["nan", "inf", "-1e400", "1e999", "x", "", "0x10", "--"]),
).map(str)
OPTIONS = [
    (["estimate"], ["--sources", "--devices", "--calibration"]),
    (["build-shards", "--out", "{tmp}/o"], ["--limit", "--workers", "--threads"]),
    (["bench-loader", "{corpus}"], ["--repeats"]),
    (["bench", "{corpus}"], ["--seeds"]),
    (["push", "{corpus}", "--repo-id", "a/b", "--dry-run"], ["--timeout", "--commit-files"]),
    (["fit-recognizer", "{corpus}", "--out", "{tmp}/r"], ["--epochs"]),
    (["bench-build"], ["--limit", "--points", "--sources-per-task", "--source-images"]),
    (["bench-encoder"], ["--samples", "--steps"]),
]


@FUZZ
@given(command=st.sampled_from(OPTIONS), data=st.data())
def test_out_of_range_cli_values_are_one_error_line(corpus, tmp_path_factory, command, data):
    base, options = command
    option = data.draw(st.sampled_from(options))
    value = data.draw(bad_numbers)
    tmp = tmp_path_factory.mktemp("cli")
    args = [a.replace("{tmp}", str(tmp)).replace("{corpus}", str(corpus.out)) for a in base]
    result = CliRunner().invoke(app, [*args, option, value])
    assert result.exit_code == 2, (args, option, value, result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert not (Path(tmp) / "o" / "manifest.json").exists()


def test_a_recognizer_is_saved_whole_never_through_a_link(saved_recognizer, tmp_path):
    from afg_datasets.recognizer import Recognizer

    own = tmp_path / "own"
    shutil.copytree(saved_recognizer, own)
    recognizer = Recognizer.from_pretrained(own)
    recognizer.save(own)  # again into its own folder: replaced when complete
    assert Recognizer.from_pretrained(own).facts == recognizer.facts
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(ModelError, match="link"):
        recognizer.save(tmp_path / "link")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(ModelError, match="not empty"):
        recognizer.save(tmp_path / "full")
    assert not any(victim.iterdir()) and (tmp_path / "full" / "mine.txt").read_text() == "keep"
    (own / "config.json").write_text("[1, 2]")  # the mixin's file, as a list
    with pytest.raises(ModelError, match="top level"):
        Recognizer.from_pretrained(own)
