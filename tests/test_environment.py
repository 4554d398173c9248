"""A broken numeric stack is named in one line with how to reinstall (exit 2), not dumped as a
dependency's traceback: each case plants a broken package ahead of the installed one."""

from __future__ import annotations

import pytest

from afg_datasets.environment import stack_problem
from tests.samples import run_cli

# The default build needs neither torchattacks nor torchvision: these cases ask for them.
NEEDS = {"torchattacks": ["--attacks", "apgd_ce"], "torchvision": ["--model", "resnet18"]}
BROKEN = {
    # a CUDA torchvision beside a CPU torch: torchvision's own import fails (0.9: 228 lines)
    "torchvision": (
        "raise RuntimeError('operator torchvision::nms does not exist')",
        "torchvision",
    ),
    "advertorch": ('raise ImportError("No module named advertorch.attacks")', "advertorch"),
    "torchattacks": ("raise ImportError('cannot import name Attack')", "torchattacks"),
    "torch": ('raise OSError("libcudnn.so.9: cannot open shared object file")', "torch"),
}


@pytest.mark.parametrize("package", list(BROKEN))
def test_a_broken_install_is_one_line_naming_it(package, tmp_path):
    code, named = BROKEN[package]
    (tmp_path / "site" / package).mkdir(parents=True)
    (tmp_path / "site" / package / "__init__.py").write_text(code + "\n")
    env = {"PYTHONPATH": str(tmp_path / "site"), "AFG_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--limit", "8", "--out", str(tmp_path / "afg"), *NEEDS.get(package, [])]
    done = run_cli("build-shards", *args, env=env)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines[-5:]
    assert f"{named} cannot be imported" in lines[0] and "pip install --force-reinstall" in lines[0]
    assert not (tmp_path / "afg" / "manifest.json").exists()


def test_a_build_that_needs_no_torchvision_runs_beside_a_broken_one(tmp_path):
    """advertorch's attacks are imported without its package __init__ (whose defenses import
    torchvision): a mismatched torchvision stops only what uses it."""
    (tmp_path / "site" / "torchvision").mkdir(parents=True)
    (tmp_path / "site" / "torchvision" / "__init__.py").write_text(BROKEN["torchvision"][0])
    env = {"PYTHONPATH": str(tmp_path / "site"), "AFG_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--limit", "8", "--attacks", "fgsm", "--out", str(tmp_path / "afg"), "--no-progress"]
    done = run_cli("build-shards", *args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "afg" / "manifest.json").is_file()


@pytest.mark.parametrize(
    "torch_version, vision_version, matched",
    [
        ("2.14.1+cu130", "0.29.1+cu130", True),
        ("2.14.1", "0.29.1", True),
        ("2.14.1+cpu", "0.29.1+cu130", False),  # the CPU-torch pre-step with a CUDA torchvision
        ("2.14.1", "0.28.0", False),
        ("2.4.0", "0.19.0", True),
    ],
)
def test_torchvision_must_pair_with_torch(monkeypatch, torch_version, vision_version, matched):
    import torch
    import torchvision

    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(torchvision, "__version__", vision_version)
    problem = stack_problem()
    assert (problem is None) == matched, problem
    if not matched:
        assert vision_version in problem and torch_version in problem


def test_this_install_is_sound():
    assert stack_problem() is None
