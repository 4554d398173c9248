"""Typed build configuration. A builder YAML maps 1:1 onto `BuildConfig`; validated on creation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from afg_datasets.attacks import ATTACKS, resolve_params
from afg_datasets.errors import ConfigError
from afg_datasets.genome import ENCODERS
from afg_datasets.layout import SPLITS
from afg_datasets.models import check_architecture
from afg_datasets.resources import resource_dir
from afg_datasets.sources import SOURCES, SourceConfig


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "small_cnn"  # registry name or `package.module:callable`
    checkpoint: str | None = None  # state dict (.pt, weights-only) or .safetensors
    layers: tuple[str, ...] = ()  # empty: the architecture's default taps (every conv block)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3

    def __post_init__(self):
        check_architecture(self.architecture)
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("epochs", "batch_size", "lr"):
            _positive(f"model.{name}", getattr(self, name))


@dataclass(frozen=True)
class GenomeConfig:
    encoder: str = "groupmap"
    groups: int = 4
    size: int = 8
    nmf_iters: int = 100
    # groupviz only (feature visualization of each group, Lucid's recipe):
    steps: int = 128  # Adam steps per visualization (Lucid: 512)
    lr: float = 0.05  # Adam learning rate (Lucid's default)
    image_size: int | None = None  # rendered size; None: the model's input size

    def __post_init__(self):
        ENCODERS[self.encoder]
        for name in ("groups", "size", "nmf_iters", "steps", "lr"):
            _positive(f"genome.{name}", getattr(self, name))
        if self.image_size is not None:
            _positive("genome.image_size", self.image_size)


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self):
        ratios = self.ratios()
        if any(r < 0 for r in ratios.values()) or not math.isclose(sum(ratios.values()), 1.0):
            raise ConfigError(f"splits must be >= 0 and sum to 1, got {ratios}")

    def ratios(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SPLITS}


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a corpus's bytes (the output path and device do not)."""

    name: str = "afg-digits"
    seed: int = 0
    limit: int | None = None
    batch_size: int = 256
    sources_per_task: int = 256  # a task (resume unit, one shard per attack and split)
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attacks: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"fgsm": {}, "pgd": {}, "cw_l2": {}}
    )
    genome: GenomeConfig = field(default_factory=GenomeConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self):
        SOURCES[self.source.name]
        if not self.attacks:
            raise ConfigError(f"attacks must name at least one of: {', '.join(ATTACKS)}")
        for attack, params in self.attacks.items():
            resolve_params(attack, params or {})
        if self.limit is not None:
            _positive("limit", self.limit)
        _positive("batch_size", self.batch_size)
        _positive("sources_per_task", self.sources_per_task)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The settings that determine the corpus (execution settings such as the number of
        loader workers are left out: they never change a byte)."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        del data["source"]["workers"]
        return data

    def config_hash(self) -> str:
        # Attack order is part of the corpus (records interleave in that order in each tar).
        identity = {**self.to_dict(), "attack_order": list(self.attacks)}
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> BuildConfig:
        """A copy with fields changed, re-validated. Keys may be dotted (`source.root`);
        None values are ignored, so CLI options that were not given change nothing."""
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            section, _, name = key.partition("__")
            if name:
                current = top.get(section, getattr(self, section))
                top[section] = dataclasses.replace(current, **{name: value})
            else:
                top[key] = value
        return dataclasses.replace(self, **top)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        return _from_dict(cls, data, "")


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys by their dotted name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[prefix + k for k in unknown]}; allowed: {', '.join(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value, f"{prefix}{key}.")
        elif key == "attacks":
            value = _attack_dict(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid {prefix or 'config'}: {err}") from None


def _attack_dict(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ConfigError(f"attacks must map attack names to parameters, got {value!r}")
    return {name: dict(params or {}) for name, params in value.items()}


def resolve_config_path(config: str | None) -> Path:
    """A YAML path, or the name of a builder shipped in `builders/` (default: digits)."""
    name = config or "digits"
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    builders = resource_dir("builders")
    candidate = builders / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in builders.glob("*.yaml"))
        raise ConfigError(f"unknown builder {name!r}; shipped builders: {', '.join(known)}")
    return candidate


def load_config(config: str | None = None) -> BuildConfig:
    path = resolve_config_path(config)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return BuildConfig.from_dict(data)
