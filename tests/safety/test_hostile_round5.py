"""Round 5 of hostile input (the journey issue): each listed case is an example of a class,
fixed where the class lives and tried beyond the listed case."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from afg_datasets.bounds import MAX_LR, MAX_REAL, MAX_RENDER
from afg_datasets.building import threads
from afg_datasets.checks import count_text
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import ConfigError, ModelError
from tests.samples import PACKAGE, run_cli


@given(st.text(max_size=30))
def test_a_count_is_ascii_digits_in_range_or_none(text):
    found = count_text(text, 4096)
    stripped = text.strip()
    if found is None:
        assert not (stripped.isascii() and stripped.isdigit() and int(stripped) <= 4096)
    else:
        assert str(found) == stripped.lstrip("0") or (found == 0 and set(stripped) == {"0"})


@pytest.mark.parametrize("value", ["²", "٣", "99999999999999999999", "-1", "0", " 1e3"])
def test_omp_num_threads_that_is_no_thread_count_is_one_config_error(value):
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        threads.thread_budget(1, {"OMP_NUM_THREADS": value})
    assert threads.thread_budget(1, {"OMP_NUM_THREADS": "3"}) == 3


def test_a_registry_entry_of_odd_digits_is_someone_elses(tmp_path, monkeypatch):
    monkeypatch.setenv("AFG_CACHE_DIR", str(tmp_path))
    threads.registry().mkdir(parents=True)
    for name, content in (("²", "5"), ("٣", "5"), ("1" * 30, "5"), ("1", "²²")):
        (threads.registry() / name).write_text(content)
    assert threads.node_processes() <= 1  # pid 1 is alive: its entry's '²²' counts as 1


def test_no_digit_test_decides_a_count_outside_checks():
    """`str.isdigit` admits '²': every count from text goes through `checks.count_text`."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("isdigit", "isnumeric"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize(
    "setting, bound",
    [("lr=1e300", str(int(MAX_LR))), ("image_size=1_000", str(MAX_RENDER)), ("lr=nan", "")],
)
def test_a_render_setting_that_reaches_an_optimizer_or_allocation_is_bounded(
    corpus, tmp_path, setting, bound
):
    args = ["encode", str(corpus.out), "--encoder", "groupviz", "--set", setting]
    done = run_cli(*args, "--out", str(tmp_path / "gv"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert setting.split("=")[0] in done.stderr and bound in done.stderr


def test_a_real_attack_parameter_is_bounded():
    from afg_datasets.attacks import resolve_params

    with pytest.raises(ConfigError, match="eps_iter must be a number in 0..1e"):
        resolve_params("pgd", {"eps_iter": MAX_REAL * 10})
    assert resolve_params("pgd", {"eps_iter": 0.01})["eps_iter"] == 0.01


@pytest.mark.parametrize(
    "images",
    ["abc", np.array([object(), object()]), np.zeros((0, 8, 8), np.uint8), [[["x"]]], None],
)
def test_predict_names_images_it_cannot_take(images):
    from afg_datasets.recognizer.recognizer import model_batch

    with pytest.raises(ModelError, match="images of"):
        model_batch(images)


def test_an_allocation_that_fails_is_one_line(monkeypatch, copy):
    from afg_datasets import cli
    from afg_datasets.corpus import corpus

    def starved(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 10 TB")

    monkeypatch.setattr(corpus.Corpus, "open", starved)
    done = CliRunner().invoke(cli.app, ["verify", str(copy)])
    assert done.exit_code == 2 and "out of memory" in done.output and "batch_size" in done.output
    monkeypatch.setattr(corpus.Corpus, "open", lambda *a, **k: (_ for _ in ()).throw(MemoryError))
    assert CliRunner().invoke(cli.app, ["verify", str(copy)]).exit_code == 2


def test_a_model_module_is_imported_only_when_its_source_defines_the_callable(
    tmp_path, monkeypatch
):
    from afg_datasets.models.nets import architecture

    ran = tmp_path / "ran"
    (tmp_path / "sideeffect_pkg").mkdir()
    (tmp_path / "sideeffect_pkg" / "__init__.py").write_text(f"open({str(ran)!r}, 'w')\n")
    (tmp_path / "sideeffect_pkg" / "nets.py").write_text(f"open({str(ran)!r}, 'w')\nx = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("sideeffect_pkg:make", "sideeffect_pkg.nets:make", "sideeffect_pkg.none:make"):
        with pytest.raises(ModelError, match="nothing was imported"):
            architecture(spec).build(1, 10, 8)
        assert not ran.exists()


def test_a_bench_setting_that_leaves_a_split_one_class_is_one_line(tmp_path):
    from afg_datasets.errors import CorpusError
    from afg_datasets.evaluation.protocol import check_classes

    both = {"is_adversarial": np.array([True, False])}
    check_classes(tmp_path, dict.fromkeys(("train", "validation", "test"), both), "seen", [])
    clean_only = {"is_adversarial": np.array([False, False])}
    splits = {"train": both, "validation": clean_only, "test": both}
    with pytest.raises(CorpusError, match=r"unseen \(without fgsm\), its validation split holds"):
        check_classes(tmp_path, splits, "unseen", ["fgsm"])


def bomb_png(side: int = 100_000) -> bytes:
    """A PNG whose header claims side x side grey pixels, in a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def picture(mode: str, size: int) -> bytes:
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.new(mode, (size, size)).save(buffer, format="PNG" if mode != "CMYK" else "JPEG")
    return buffer.getvalue()


def with_images(root, data: bytes) -> None:
    """Every stored image of `root` replaced by `data`, the corpus sealed again (manifest
    hashes, card, croissant): a verified corpus whose pictures are hostile."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from afg_datasets.corpus.manifest import load_manifest
    from afg_datasets.layout import sha256_file
    from afg_datasets.publish.card import refresh_card

    manifest = load_manifest(root)
    for entry in manifest["files"]:
        if not entry["path"].endswith(".parquet"):
            continue
        shard = root / entry["path"]
        table = pq.read_table(shard)
        field = table.schema.field("image")
        images = [{"bytes": data, "path": None}] * table.num_rows
        index = table.schema.get_field_index("image")
        pq.write_table(table.set_column(index, field, pa.array(images, field.type)), shard)
        entry.update(sha256=sha256_file(shard), bytes=shard.stat().st_size)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    refresh_card(Corpus.of(root))


@pytest.mark.parametrize(
    "case",
    ["rgba", "cmyk", "another size", "bomb"],
)
def test_card_and_show_on_hostile_stored_pictures_are_one_line_at_most(copy, tmp_path, case):
    side = json.loads((copy / "manifest.json").read_text())["model"]["image_size"]
    data = {
        "rgba": lambda: picture("RGBA", side),
        "cmyk": lambda: picture("CMYK", side),
        "another size": lambda: picture("L", side + 3),
        "bomb": bomb_png,
    }[case]()
    with_images(copy, data)
    (copy / "examples.png").unlink()  # so that `afg card` draws it again from these pictures
    key = next(p for p in (copy / "data" / "fgsm").glob("test-*.parquet"))
    import pyarrow.parquet as pq

    record = pq.read_table(key, columns=["key"]).column("key")[0].as_py()
    for args in (
        ["card", str(copy)],
        ["show", str(copy), record, "--out", str(tmp_path / "s.png")],
    ):
        done = run_cli(*args)
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        if case in ("another size", "bomb"):
            assert done.returncode == 2 and "a stored image" in done.stderr
        else:
            assert done.returncode == 0, done.stderr[-2000:]


def test_a_picture_without_a_corpus_shape_is_bounded():
    from afg_datasets.errors import ImageError
    from afg_datasets.images import decode_png

    with pytest.raises(ImageError, match="5000x5000 px, over"):
        decode_png(bomb_png(5000))  # an atlas or mosaic read as it is: no shape to hold it to
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_png(bomb_png())  # Pillow's own bound, as one line
    with pytest.raises(ImageError, match="cannot read"):
        decode_png(b"\x89PNG\r\n\x1a\n broken")
