"""Typed build configuration. A builder YAML maps 1:1 onto `BuildConfig`; validated on creation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from afg_datasets.attacks import ATTACKS, resolve_params
from afg_datasets.bounds import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_GENOME_SIZE,
    MAX_GROUPS,
    MAX_ITERS,
    MAX_RENDER,
    MAX_SOURCES,
)
from afg_datasets.checks import Fraction, PositiveFloat, Seed, bounded, section
from afg_datasets.documents import load_yaml
from afg_datasets.errors import ConfigError
from afg_datasets.formats import DEFAULT_FORMATS, FORMATS, TABLE_FORMAT, OutputFormat
from afg_datasets.genome import ENCODERS
from afg_datasets.layout import SPLITS
from afg_datasets.models import check_architecture, is_user_model
from afg_datasets.resources import resource_dir
from afg_datasets.sources import SOURCES, SourceConfig

# Safety limits on sizes and counts (a value above one is refused, naming the limit).


@section("model.")
class ModelConfig:
    architecture: str = "small_cnn"  # registry name or `package.module:callable`
    checkpoint: str | None = None  # state dict (.pt, weights-only) or .safetensors
    # empty: the architecture's default taps (every conv block); YAML gives a list
    layers: Annotated[tuple[str, ...], Field(strict=False)] = ()
    epochs: bounded(MAX_EPOCHS) = 10
    batch_size: bounded(MAX_BATCH) = 64
    lr: PositiveFloat = 2e-3

    def __post_init__(self):
        check_architecture(self.architecture)


@section("genome.")
class GenomeConfig:
    encoder: str = "groupmap"
    groups: bounded(MAX_GROUPS) = 4
    size: bounded(MAX_GENOME_SIZE) = 8
    nmf_iters: bounded(MAX_ITERS) = 100
    # groupviz only (feature visualization of each group, Lucid's recipe):
    steps: bounded(MAX_ITERS) = 128  # Adam steps per visualization (Lucid: 512)
    lr: PositiveFloat = 0.05  # Adam learning rate (Lucid's default)
    image_size: bounded(MAX_RENDER) | None = None  # rendered size; None: the model's input size
    # groupbasis only (a basis fitted once on clean train images, NNLS codes):
    fit_images: bounded(MAX_SOURCES) = 512  # the first clean train images the basis is fitted on
    nnls_iters: bounded(MAX_ITERS) = 100  # solver steps of each record's codes

    def __post_init__(self):
        ENCODERS[self.encoder]

    def settings(self) -> dict[str, Any]:
        """The encoder's name and the settings its own `Config` declares (what it is made with,
        and all of the section that enters the config hash)."""
        names = [f.name for f in dataclasses.fields(ENCODERS[self.encoder].Config)]
        return {"encoder": self.encoder, **{name: getattr(self, name) for name in names}}


@section("splits.")
class SplitConfig:
    train: Fraction = 0.8
    validation: Fraction = 0.1
    test: Fraction = 0.1

    def __post_init__(self):
        ratios = self.ratios()
        if not math.isclose(sum(ratios.values()), 1.0):
            raise ConfigError(f"splits must sum to 1, got {ratios}")

    def ratios(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SPLITS}


@section("")
class BuildConfig:
    """Everything that determines a corpus's bytes (the output path and device do not)."""

    name: str = "afg-digits"
    seed: Seed = 0
    limit: bounded(MAX_SOURCES) | None = None
    batch_size: bounded(MAX_BATCH) = 256
    precision: Literal["fp32", "bf16"] = "fp32"  # target-model forward passes (autocast)
    sources_per_task: bounded(MAX_SOURCES) = 256  # a task (resume unit, one shard per attack
    # and split)
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attacks: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"fgsm": {}, "pgd": {}, "cw_l2": {}}
    )
    genome: GenomeConfig = field(default_factory=GenomeConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    # Output formats written (formats/ FORMATS); parquet always (the card and readers need it).
    formats: Annotated[tuple[str, ...], Field(strict=False)] = DEFAULT_FORMATS

    def __post_init__(self):
        SOURCES[self.source.name]
        if not self.attacks:
            raise ConfigError(f"attacks must name at least one of: {', '.join(ATTACKS)}")
        for attack, params in self.attacks.items():
            resolve_params(attack, params or {})
        for name in self.formats:
            FORMATS[name]
        if TABLE_FORMAT.name not in self.formats or len(set(self.formats)) != len(self.formats):
            raise ConfigError(
                f"formats {list(self.formats)}: each at most once, {TABLE_FORMAT.name!r} "
                f"among them (the card and every reader read it); valid: {', '.join(FORMATS)}"
            )

    def output_formats(self) -> list[OutputFormat]:
        return [FORMATS[name] for name in self.formats]

    def to_dict(self) -> dict[str, Any]:
        """The settings that determine the corpus (execution settings such as the number of
        loader workers are left out: they never change a byte)."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        del data["source"]["workers"]
        data["genome"] = self.genome.settings()  # only the chosen encoder's settings
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
            part, _, name = key.partition("__")
            if name:
                current = top.get(part, getattr(self, part))
                top[part] = dataclasses.replace(current, **{name: value})
            else:
                top[key] = value
        return dataclasses.replace(self, **top)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        return _from_dict(cls, data, "")


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys by their dotted name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(
            f"{prefix or 'config'}: key {odd[0]!r} is not a name; allowed: {', '.join(names)}"
        )
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
        odd = [name for name in value if not isinstance(name, str)]
        if odd:
            raise ConfigError(
                f"attacks: {odd[0]!r} is not an attack name; use {', '.join(ATTACKS)}"
            )
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ConfigError(f"attacks must map attack names to parameters, got {value!r}")
    bad = {name: p for name, p in value.items() if not isinstance(p, dict | None)}
    if bad:
        raise ConfigError(f"attacks: parameters must be a mapping, got {bad!r}")
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


def load_config(config: str | None = None, model_code: str | None = None) -> BuildConfig:
    """The builder config `config` (a shipped builder's name or a YAML path). A YAML from
    elsewhere that names model code (`model.architecture: module:callable`) is refused unless
    the caller names the same code (`model_code`, e.g. `--model`): a config file alone never
    runs code."""
    path = resolve_config_path(config)
    try:
        cfg = BuildConfig.from_dict(load_yaml(path, ConfigError) or {})
    except ConfigError as err:
        message = str(err)
        raise ConfigError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
    code = cfg.model.architecture
    if is_user_model(code) and code != model_code:
        raise ConfigError(
            f"{path} names model code {code!r}: a config file alone never runs code; pass "
            f"--model {code} to run it"
        )
    return cfg
