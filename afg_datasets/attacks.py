"""Attacks: registry name -> advertorch attack. The one torch-compatibility shim lives here."""

from __future__ import annotations

import importlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from afg_datasets.bounds import MAX_REAL
from afg_datasets.errors import ConfigError
from afg_datasets.registry import Registry


def _zero_gradients(x: Any) -> None:
    """torch<1.9's `torch.autograd.gradcheck.zero_gradients`, which advertorch 0.2.3 imports."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, (list, tuple)):
        for item in x:
            _zero_gradients(item)


def install_torch_compat() -> None:
    """Provide the one name advertorch needs from torch < 1.9. Idempotent; touches nothing else."""
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    if not hasattr(gradcheck, "zero_gradients"):
        gradcheck.zero_gradients = _zero_gradients


def advertorch_attacks():
    install_torch_compat()
    return importlib.import_module("advertorch.attacks")


@dataclass(frozen=True)
class AttackSpec:
    """How to build one advertorch attack. `budget` names the norm bounded by param `eps`;
    `norm` the distance a minimum-norm or unbounded attack minimizes (its family)."""

    class_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    budget: str | None = None  # "linf" | "l2" | None (minimum-norm or unbounded attacks)
    needs_num_classes: bool = False
    norm: str | None = None

    @property
    def family(self) -> str:
        """The norm family `afg bench --unseen family` holds out together: linf, l2, l1, l0
        or spatial."""
        return self.budget or self.norm or "other"


ATTACKS: Registry[AttackSpec] = Registry(
    "attack",
    {
        "fgsm": AttackSpec("GradientSignAttack", {"eps": 0.3}, "linf"),
        "bim": AttackSpec(
            "LinfBasicIterativeAttack", {"eps": 0.3, "nb_iter": 10, "eps_iter": 0.05}, "linf"
        ),
        "pgd": AttackSpec("LinfPGDAttack", {"eps": 0.3, "nb_iter": 40, "eps_iter": 0.01}, "linf"),
        "pgd_l2": AttackSpec("L2PGDAttack", {"eps": 2.0, "nb_iter": 40, "eps_iter": 0.1}, "l2"),
        "mifgsm": AttackSpec(
            "LinfMomentumIterativeAttack", {"eps": 0.3, "nb_iter": 10, "eps_iter": 0.03}, "linf"
        ),
        "cw_l2": AttackSpec(
            "CarliniWagnerL2Attack",
            {"max_iterations": 100, "binary_search_steps": 5},
            None,
            True,
            "l2",
        ),
        "ddn": AttackSpec("DDNL2Attack", {"nb_iter": 100}, norm="l2"),
        "ead": AttackSpec(
            "ElasticNetL1Attack",
            {"max_iterations": 100, "binary_search_steps": 5},
            None,
            True,
            "l1",
        ),
        "jsma": AttackSpec("JacobianSaliencyMapAttack", {"gamma": 0.1}, None, True, "l0"),
        "lbfgs": AttackSpec(
            "LBFGSAttack", {"max_iterations": 50, "binary_search_steps": 5}, None, True, "l2"
        ),
        "fab": AttackSpec("LinfFABAttack", {"n_iter": 50}, norm="linf"),
        "spsa": AttackSpec("LinfSPSAAttack", {"eps": 0.3, "nb_iter": 10, "nb_sample": 64}, "linf"),
        "stadv": AttackSpec(
            "SpatialTransformAttack", {"max_iterations": 100}, None, True, "spatial"
        ),
        "singlepixel": AttackSpec("SinglePixelAttack", {"max_pixels": 50}, norm="l0"),
        "localsearch": AttackSpec("LocalSearchAttack", {"round_ub": 5}, norm="l0"),
    },
)

_RESERVED = {"predict", "num_classes", "clip_min", "clip_max", "targeted"}
_REAL_VALUED = {"confidence"}  # integer default (0) in advertorch, but a real-valued margin


def attack_class(name: str) -> type:
    return getattr(advertorch_attacks(), ATTACKS[name].class_name)


MAX_ATTACK_COUNT = 100_000  # iterations, samples, pixels: a safety limit against runaway builds


def _check_param(name: str, key: str, value: Any, default: Any) -> None:
    """A YAML value must have the type of advertorch's default: numbers in 0..MAX_REAL (they
    reach an optimizer), integers at most MAX_ATTACK_COUNT, booleans only where the default
    is one."""
    where = f"attack {name!r}: {key}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if not number or not float(value).is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if not 0 <= value <= MAX_ATTACK_COUNT:
            raise ConfigError(f"{where} must be in 0..{MAX_ATTACK_COUNT}, got {value!r}")
    elif isinstance(default, float) or default is None:
        if default is None and value is None:
            return
        if not number or not math.isfinite(value) or not 0 <= value <= MAX_REAL:
            raise ConfigError(f"{where} must be a number in 0..{MAX_REAL:g}, got {value!r}")
    elif type(value) is not type(default):
        raise ConfigError(f"{where} must be a {type(default).__name__}, got {value!r}")


def resolve_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Registry defaults updated by `params`; unknown names and ill-typed, non-finite, negative
    or oversized values raise ConfigError naming the attack and parameter."""
    signature = inspect.signature(attack_class(name).__init__).parameters
    allowed = set(signature) - _RESERVED - {"self"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"attack {name!r}: unknown parameter(s) {unknown}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    merged = {**ATTACKS[name].defaults, **params}
    for key, value in merged.items():
        default = ATTACKS[name].defaults.get(key, signature[key].default)
        if key in _REAL_VALUED:
            default = float(default)
        _check_param(name, key, value, default)
        if isinstance(default, int) and not isinstance(default, bool):
            merged[key] = int(value)
    return merged


class Attack:
    """An advertorch attack bound to a model; `run` never modifies its input."""

    def __init__(
        self, name: str, model: torch.nn.Module, num_classes: int, params: Mapping[str, Any]
    ):
        spec = ATTACKS[name]
        self.name = name
        self.params = resolve_params(name, params)
        kwargs = dict(self.params)
        if spec.needs_num_classes:
            kwargs["num_classes"] = num_classes
        if "clip_min" in inspect.signature(attack_class(name).__init__).parameters:
            kwargs.update(clip_min=0.0, clip_max=1.0)
        self._attack = attack_class(name)(model, **kwargs)

    def linf_budget(self) -> float | None:
        """eps of an Linf-bounded attack, else None."""
        return float(self.params["eps"]) if ATTACKS[self.name].budget == "linf" else None

    @property
    def params_json(self) -> str:
        """The resolved parameters as the canonical JSON stored in every record."""
        return json.dumps(self.params, sort_keys=True)

    def run(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        """Untargeted adversarial version of `x` (in [0,1]) for labels `y`, seeded."""
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            # contiguous: advertorch's cw_l2 calls .view on its input (NHWC -> NCHW is not)
            adv = self._attack.perturb(x.clone(memory_format=torch.contiguous_format), y.clone())
        return adv.detach().clamp(0.0, 1.0)
