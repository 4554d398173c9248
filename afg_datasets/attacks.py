"""Attacks: registry name -> an attack of advertorch or torchattacks (the two backends). The one
torch-compatibility shim (advertorch's) lives here."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import sys
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
    """`advertorch.attacks`. Where advertorch is not imported yet, its package is registered
    without running its `__init__`, which also imports its defenses and through them
    torchvision and `torch._dynamo` (1.3 s here, 0.003 s without): no attack uses them, and a
    config's validation (every build, re-run and estimate) inspects the attack classes."""
    install_torch_compat()
    if "advertorch" not in sys.modules:
        spec = importlib.util.find_spec("advertorch")
        if spec is not None and spec.submodule_search_locations is not None:
            sys.modules["advertorch"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("advertorch.attacks")


BACKENDS = {
    "advertorch": advertorch_attacks,
    "torchattacks": lambda: importlib.import_module("torchattacks"),
}


@dataclass(frozen=True)
class AttackSpec:
    """How to build one attack. `budget` names the norm bounded by param `eps`; `norm` the
    distance a minimum-norm or unbounded attack minimizes; `queries` what it asks of the model:
    `gradient` (white box) or `score` (the output scores only: a black box). `fixed` are
    settings the entry's name means (APGD-CE's loss, AutoAttack's version): recorded, never set."""

    class_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    budget: str | None = None  # "linf" | "l2" | None (minimum-norm or unbounded attacks)
    needs_num_classes: bool = False
    norm: str | None = None
    backend: str = "advertorch"
    queries: str = "gradient"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    targeted: bool = False  # aims at a target class: each source gets a seeded other class
    revision: int = 0  # > 0: this name now builds other bytes than it did (in the config hash)

    @property
    def family(self) -> str:
        """The family `afg bench --unseen family` holds out together: `score` for every
        score-based black box, else the norm: linf, l2, l1, l0 or spatial."""
        return "score" if self.queries == "score" else self.budget or self.norm or "other"


def _torchattacks(class_name: str, defaults: dict, budget=None, norm=None, **more) -> AttackSpec:
    return AttackSpec(class_name, defaults, budget, norm=norm, backend="torchattacks", **more)


_LINF, _L2 = {"norm": "Linf"}, {"norm": "L2"}


def _by_backend(entries: Mapping[str, AttackSpec]) -> str:
    """The valid names by backend, for the one line an unknown attack name gets."""
    backends: dict[str, list[str]] = {}
    for name, spec in entries.items():
        backends.setdefault(spec.backend, []).append(name)
    return "; ".join(f"{backend}: {', '.join(names)}" for backend, names in backends.items())


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
        # advertorch's JSMA is targeted only, and its untargeted L-BFGS returns the loss's
        # negation with the loss's own gradient: given the true class, both returned the
        # clean image (0 of 1,000 MNIST sources). Both now aim at a seeded other class
        # (L-BFGS as Szegedy et al. 2014 define it): revision 1.
        "jsma": AttackSpec(
            "JacobianSaliencyMapAttack", {"gamma": 0.1}, None, True, "l0", targeted=True, revision=1
        ),
        "lbfgs": AttackSpec(
            "LBFGSAttack",
            {"max_iterations": 50, "binary_search_steps": 5},
            None,
            True,
            "l2",
            fixed={"targeted": True},
            targeted=True,
            revision=1,
        ),
        "fab": AttackSpec("LinfFABAttack", {"n_iter": 50}, norm="linf"),
        "spsa": AttackSpec(
            "LinfSPSAAttack", {"eps": 0.3, "nb_iter": 10, "nb_sample": 64}, "linf", queries="score"
        ),
        "stadv": AttackSpec(
            "SpatialTransformAttack", {"max_iterations": 100}, None, True, "spatial"
        ),
        "singlepixel": AttackSpec(
            "SinglePixelAttack", {"max_pixels": 50}, norm="l0", queries="score"
        ),
        "localsearch": AttackSpec("LocalSearchAttack", {"round_ub": 5}, norm="l0", queries="score"),
        # torchattacks (AutoAttack's family, the RobustBench standard). Where both backends
        # have an attack (PGD, FAB, SPSA), today's names mean advertorch's and build its bytes.
        "apgd_ce": _torchattacks(
            "APGD", {"eps": 0.3, "steps": 100}, "linf", fixed={**_LINF, "loss": "ce"}
        ),
        "apgd_t": _torchattacks(
            "APGDT", {"eps": 0.3, "steps": 100}, "linf", needs_num_classes=True, fixed=_LINF
        ),
        "apgd_l2": _torchattacks(
            "APGD", {"eps": 2.0, "steps": 100}, "l2", fixed={**_L2, "loss": "ce"}
        ),
        "square": _torchattacks(
            "Square", {"eps": 0.3, "n_queries": 5000}, "linf", queries="score", fixed=_LINF
        ),
        "autoattack": _torchattacks(
            "AutoAttack",
            {"eps": 0.3},
            "linf",
            needs_num_classes=True,
            fixed={**_LINF, "version": "standard"},
        ),
        # overshoot 0.2, not DeepFool's 0.02: the stored image is rounded to 8 bits, and 0.02
        # lands within a rounding of the boundary (38 % of the digits model's sources stay
        # adversarial once stored, 89 % at 0.2)
        "deepfool": _torchattacks("DeepFool", {"steps": 50, "overshoot": 0.2}, norm="l2"),
    },
    grouped=_by_backend,
)

# set by the attack's binding, never by a config: the model, class count, pixel range, mode,
# seed (each run's own) and logging
_RESERVED = {"predict", "num_classes", "clip_min", "clip_max", "targeted"}
_RESERVED |= {"model", "n_classes", "seed", "verbose"}
_REAL_VALUED = {"confidence"}  # integer default (0) in advertorch, but a real-valued margin
_NUM_CLASSES = {"advertorch": "num_classes", "torchattacks": "n_classes"}


def attack_class(name: str) -> type:
    spec = ATTACKS[name]
    return getattr(BACKENDS[spec.backend](), spec.class_name)


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
    allowed = set(signature) - _RESERVED - set(ATTACKS[name].fixed) - {"self"}
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
    """An attack of either backend bound to a model; `run` never modifies its input."""

    def __init__(
        self, name: str, model: torch.nn.Module, num_classes: int, params: Mapping[str, Any]
    ):
        spec = ATTACKS[name]
        self.name = name
        self.num_classes = num_classes
        self.params = {**resolve_params(name, params), **spec.fixed}
        kwargs = dict(self.params)
        if spec.needs_num_classes:
            kwargs[_NUM_CLASSES[spec.backend]] = num_classes
        accepted = inspect.signature(attack_class(name).__init__).parameters
        if "clip_min" in accepted:
            kwargs.update(clip_min=0.0, clip_max=1.0)
        if "seed" in accepted:
            kwargs["seed"] = 0  # each run sets its own (`_seed`); AutoAttack's None is the clock
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
            x = x.clone(memory_format=torch.contiguous_format)
            if ATTACKS[self.name].targeted:
                y = self.targets(y, seed)
            if ATTACKS[self.name].backend == "advertorch":
                adv = self._attack.perturb(x, y.clone())
            else:
                self._seed(seed)
                adv = self._attack(x, y.clone())
        return adv.detach().clamp(0.0, 1.0)

    def targets(self, y: torch.Tensor, seed: int) -> torch.Tensor:
        """A targeted attack's aim: for each source, an other class than its own, drawn from
        the run's seed (uniform over the other classes)."""
        generator = torch.Generator().manual_seed(seed % 2**63)
        offset = torch.randint(1, max(self.num_classes, 2), y.shape, generator=generator)
        return (y + offset.to(y.device)) % max(self.num_classes, 2)

    def _seed(self, seed: int) -> None:
        """A torchattacks attack seeds torch itself from its `seed` (AutoAttack: each of its
        attacks, made once at construction), so each run gives it the run's seed."""
        for attack in [self._attack, *self._attack._attacks.values()]:
            if hasattr(attack, "seed"):
                attack.seed = seed % 2**63
