"""Shared fixtures: an isolated model cache, a tiny untrained model, one small built corpus."""

from __future__ import annotations

import os
import shutil

# One thread per test process (pytest runs two, see pyproject's addopts): builds then run their
# tasks in this process (the default task processes are one per core this budget gives), and CLI
# subprocesses inherit it. Tests of the process pool ask for workers explicitly.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch

from afg_datasets.building import build_corpus
from afg_datasets.config import load_config
from afg_datasets.models import SmallCNN, TargetModel, freeze

SMALL_LIMIT = 48


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Trained target models are cached per test session, never in the user's home."""
    path = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AFG_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_model() -> TargetModel:
    torch.manual_seed(0)
    return freeze(TargetModel(SmallCNN(1, 10, 8, width=4), [0.5], [0.25]))


@pytest.fixture(scope="session")
def small_config():
    """The digits builder with the paper's genome (groupmap: NMF, the most moving parts) on the
    first images: the real pipeline, small."""
    return load_config("digits", encoder="groupmap").replace(limit=SMALL_LIMIT)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, small_config, model_cache):
    out = tmp_path_factory.mktemp("corpus") / "afg"
    return build_corpus(small_config, out, progress=False)


@pytest.fixture()
def copy(corpus, tmp_path):
    """A private copy of the session's corpus, free to damage."""
    target = tmp_path / "afg"
    shutil.copytree(corpus.out, target)
    return target
