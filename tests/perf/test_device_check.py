"""The GPU device check, run on CPU at its tiny size, and the carry recipe's offline install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from afg_datasets.cli import app
from tests.samples import REPO

ATTACKS = {f"attack/{name}" for name in ("fgsm", "pgd", "cw_l2", "apgd_ce", "square")}
STAGES = {"decode", "predict", "encode", "write"} | ATTACKS


def test_device_check_runs_on_cpu_and_reports_every_figure(tmp_path):
    args = ["bench-build", "--what", "device", "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, [*args, "--work-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["device"]
    assert report["preset"] == "tiny" and report["model"] == "resnet50"
    assert report["classes"] == 1000 and report["layers"] == [f"layer{i}" for i in range(1, 5)]
    assert [v["precision"] for v in report["variants"]] == ["fp32", "bf16"]
    for variant in report["variants"]:
        assert set(variant["source_images_per_s"]) >= STAGES
        # the floor is a gradient pass: only the attacks are judged against it
        assert set(variant["floor_fraction"]) == ATTACKS and variant["floor_spread"] >= 0
        assert variant["floor_images_per_s"] > 0 and variant["end_to_end_images_per_s"] > 0
        assert set(variant["attacks"]) == {"fgsm", "pgd", "cw_l2", "apgd_ce", "square"}
        # images are labelled by the model itself: every source is attacked
        assert all(a["attacked"] == report["sources"] for a in variant["attacks"].values())
        assert variant["attacks"]["fgsm"]["success_rate"] > 0
    assert set(report["bf16_price"]) == {"fgsm", "pgd", "cw_l2", "apgd_ce", "square"}
    assert set(report["decode_overlap"]) == {"workers_0", f"workers_{report['loader_workers']}"}
    assert report["groupviz"]["records_per_s"] > 0 and report["groupviz"]["image_size"] == 128
    render_val = report["groupviz"]["imagenet_val"]
    assert render_val["records"] == 50_000 * 6 and render_val["wall_seconds"] > 0
    atlas = report["atlas"]
    assert atlas["pictures"] == 4 * 6 and atlas["image_size"] == 32 and atlas["seconds"] > 0
    assert atlas["floor_fraction"] > 0 and atlas["share_of_projected_build"] > 0
    assert report["largest_batch"]["largest_fitting"] == 4  # the tiny cap
    for projection in report["imagenet_val_projection"].values():
        assert projection["sources"] == 50_000 and projection["devices"] == 8
        assert projection["wall_seconds"] > 0 and projection["bytes"] > 0
    assert list(tmp_path.iterdir()) == []  # the synthetic folder and checkpoint are removed


def _fake_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (module `afgprobe`), standing in for the carried ones."""
    path = folder / "afgprobe-1.0-py3-none-any.whl"
    info = "afgprobe-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("afgprobe.py", "VALUE = 42\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: afgprobe\nVersion: 1.0\n")
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return path


def test_install_script_installs_only_the_carried_wheels_in_a_fresh_venv(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = tmp_path / "site"
    env = {
        **os.environ,
        "PYTHON": str(venv / "bin" / "python"),
        "AFG_DEVICE_SITE": str(site),
        "AFG_DEVICE_INSTALL_ONLY": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # any fetch would fail
    }
    script = REPO / "builders" / "device" / "run_check.sh"
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(script), str(wheels), str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "afgprobe==1.0" in done.stdout
    probe = subprocess.run(
        [env["PYTHON"], "-c", "import afgprobe; print(afgprobe.VALUE)"],
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "42"
    assert "installed 1 wheels" in (out / "device.log").read_text()


def test_a_missing_work_dir_is_one_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short name: the message is not wrapped
    args = ["bench-build", "--what", "device", "--work-dir", "nowhere"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "'nowhere' does not exist" in result.output
