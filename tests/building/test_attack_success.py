"""An attack that runs is not an attack that works: every registry entry, of both backends,
fools the default digits model at its defaults at least as often as its floor, on 24 digits the
model gets right, judged on the 8-bit image a corpus stores. Seeded on one thread, so each rate
is the same every run; the rates are printed (`pytest -s`)."""

from __future__ import annotations

import pytest
import torch

import afg_datasets
from afg_datasets.attacks import ATTACKS, Attack
from afg_datasets.building.stats import WEAK_SUCCESS, weak_attacks
from afg_datasets.config import load_config
from afg_datasets.sources import load_source

pytestmark = pytest.mark.slow  # minutes of one worker (`-m 'not slow'` skips it)


# Measured at the defaults on these 24 sources (0.10), floors a little below; spsa's defaults
# (lr 0.01, 10 steps: at most 0.1 of its eps 0.3) fool 8 % here, and a build warns of it (its
# bytes are kept: lr 0.05 fools 97 %). singlepixel and
# localsearch change one pixel, or a few, at a time: no such change fools this model (0 of 63,
# with every pixel tried), so they are held to a floor on a fragile (untrained) model instead.
FLOORS = {
    "fgsm": 0.9, "bim": 0.9, "pgd": 0.9, "pgd_l2": 0.5, "mifgsm": 0.9, "cw_l2": 0.6,
    "ddn": 0.9, "ead": 0.9, "jsma": 0.3, "lbfgs": 0.8, "fab": 0.3, "spsa": 0.05,
    "stadv": 0.8, "apgd_ce": 0.9, "apgd_t": 0.9, "apgd_l2": 0.5, "square": 0.9,
    "autoattack": 0.9, "deepfool": 0.7,
}  # fmt: skip
FRAGILE_ONLY = {"singlepixel": 0.3, "localsearch": 0.2}


@pytest.fixture(scope="module")
def digits(corpus):
    """The default digits model (the session corpus's) and 24 digits it classifies right."""
    torch.set_num_threads(1)
    model = afg_datasets.load_target_model(corpus.out)
    x, y = load_source(load_config("digits").source).tensors(torch.arange(1700, 1797).numpy())
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return model, x[right][:24], y[right][:24]


def success(model, name, x, y) -> float:
    adv = Attack(name, model, 10, {}).run(x, y, seed=7)
    stored = (adv * 255).round() / 255  # what a corpus keeps, and judges success on
    with torch.no_grad():
        return (model(stored).argmax(1) != y).float().mean().item()


def test_every_attack_has_a_floor():
    assert set(FLOORS) | set(FRAGILE_ONLY) == set(ATTACKS)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_each_attack_fools_the_default_model(name, digits):
    model, x, y = digits
    rate = success(model, name, x, y)
    print(f"{name} ({ATTACKS[name].backend}): success {rate:.3f} on {len(y)} digits")
    assert len(y) == 24 and rate >= FLOORS[name], f"{name}: {rate:.3f} < {FLOORS[name]}"


@pytest.mark.parametrize("name", sorted(FRAGILE_ONLY))
def test_pixel_attacks_fool_a_fragile_model(name, tiny_model):
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny_model(x).argmax(1)
    rate = success(tiny_model, name, x, y)
    print(f"{name}: success {rate:.3f} on 32 inputs of an untrained model")
    assert rate >= FRAGILE_ONLY[name]


def test_a_build_warns_of_an_attack_that_rarely_succeeds():
    stats = {"attacks": {
        "pgd": {"attacked": 100, "successes": 100, "success_rate": 1.0},
        "lbfgs": {"attacked": 1000, "successes": 0, "success_rate": 0.0},
        "spsa": {"attacked": 100, "successes": 10, "success_rate": WEAK_SUCCESS},
    }}  # fmt: skip
    (warning,) = weak_attacks(stats)
    assert "'lbfgs' succeeded on 0 of the 1000 sources" in warning and "under 10%" in warning
