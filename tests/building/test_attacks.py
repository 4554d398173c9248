import importlib

import pytest
import torch

from afg_datasets.attacks import ATTACKS, Attack, install_torch_compat
from afg_datasets.models import SmallCNN, TargetModel, freeze
from tests.samples import QUICK

# Small settings so every registry entry runs in a unit test on an 8x8 model.
REQUIRED = [
    "fgsm",
    "bim",
    "pgd",
    "pgd_l2",
    "mifgsm",
    "cw_l2",
    "ddn",
    "ead",
    "jsma",
    "lbfgs",
    "fab",
    "spsa",
    "stadv",
    "singlepixel",
    "localsearch",
    "apgd_ce",
    "apgd_t",
    "apgd_l2",
    "square",
    "autoattack",
    "deepfool",
]


def test_registry_has_the_documented_attacks():
    assert set(REQUIRED) <= set(ATTACKS)


def test_torch_compat_shim_provides_zero_gradients():
    install_torch_compat()
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    gradcheck.zero_gradients(x)
    assert torch.equal(x.grad, torch.zeros(3))
    importlib.import_module("advertorch.attacks.fast_adaptive_boundary")


@pytest.fixture(scope="module")
def tiny_rgb_model() -> TargetModel:
    torch.manual_seed(0)
    return freeze(TargetModel(SmallCNN(3, 10, 8, width=4), [0.5] * 3, [0.25] * 3))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name, channels, tiny_model, tiny_rgb_model):
    """Every entry of both backends, on grey and RGB: input untouched, shape and range kept,
    the budget respected, the same bytes from the same seed."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, channels, 8, 8, generator=generator)
    y = torch.tensor([0, 1, 2, 3])
    before = x.clone()
    model = tiny_model if channels == 1 else tiny_rgb_model
    attack = Attack(name, model, 10, QUICK.get(name, {}))
    adv = attack.run(x, y, seed=0)
    assert torch.equal(adv, attack.run(x, y, seed=0)), "seeded: the same run, the same bytes"
    assert torch.equal(x, before), "attacks must not modify their input"
    assert adv.shape == x.shape
    assert adv.min() >= 0 and adv.max() <= 1
    budget = ATTACKS[name].budget
    eps = attack.params.get("eps")
    delta = (adv - x).flatten(1)
    if budget == "linf":
        assert delta.abs().amax() <= eps + 1e-6
    elif budget == "l2":
        assert delta.norm(dim=1).max() <= eps + 1e-4


def test_attack_is_seeded(tiny_model):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    attack = Attack("pgd", tiny_model, 10, {"nb_iter": 3})
    assert torch.equal(attack.run(x, y, seed=5), attack.run(x, y, seed=5))
    assert not torch.equal(attack.run(x, y, seed=5), attack.run(x, y, seed=6))


def test_score_based_attacks_are_one_family_for_the_bench():
    """`afg bench --unseen family` holds out every score-based black box together, whichever
    backend and norm; gradient attacks by norm."""
    from afg_datasets.evaluation.protocol import settings

    attacks = ["fgsm", "pgd", "apgd_ce", "square", "spsa", "cw_l2", "deepfool"]
    families = [held for setting, held in settings(attacks, "family") if setting == "family"]
    assert families == [["fgsm", "pgd", "apgd_ce"], ["square", "spsa"], ["cw_l2", "deepfool"]]
    assert {ATTACKS[a].queries for a in ("square", "spsa", "singlepixel", "localsearch")} == {
        "score"
    }
