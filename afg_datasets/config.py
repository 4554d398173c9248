"""Typed build configuration. A builder YAML maps 1:1 onto `BuildConfig`; validated on creation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from afg_datasets.attacks import ATTACKS, resolve_params
from afg_datasets.bounds import MAX_BATCH, MAX_EPOCHS, MAX_SOURCES
from afg_datasets.checks import (
    Choice,
    Fraction,
    LearningRate,
    Seed,
    bounded,
    from_mapping,
    section,
)
from afg_datasets.documents import load_yaml
from afg_datasets.errors import ConfigError
from afg_datasets.formats import DEFAULT_FORMATS, FORMATS, TABLE_FORMAT, OutputFormat
from afg_datasets.genome import ENCODERS, GENOME
from afg_datasets.layout import SPLITS
from afg_datasets.models import check_architecture, is_user_model
from afg_datasets.resources import resource_dir
from afg_datasets.sources import SOURCE

# Safety limits on sizes and counts (a value above one is refused, naming the limit).


@section("model.")
class ModelConfig:
    architecture: str = "small_cnn"  # registry name or `package.module:callable`
    checkpoint: str | None = None  # state dict (.pt, weights-only) or .safetensors
    # empty: the architecture's default taps (every conv block); YAML gives a list
    layers: Annotated[tuple[str, ...], Field(strict=False)] = ()
    epochs: bounded(MAX_EPOCHS) = 10
    batch_size: bounded(MAX_BATCH) = 64
    lr: LearningRate = 2e-3

    def __post_init__(self):
        check_architecture(self.architecture)


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
    # `source` and `genome` are each the chosen entry's own `Config` (a union of the registered
    # entries' sections, discriminated by `source.name` / `genome.encoder`).
    source: Any = field(default_factory=SOURCE.default_config, metadata={"choice": SOURCE})
    model: ModelConfig = field(default_factory=ModelConfig)
    attacks: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"fgsm": {}, "pgd": {}, "cw_l2": {}},
        metadata={"parse": lambda value: _attack_dict(value)},
    )
    genome: Any = field(default_factory=GENOME.default_config, metadata={"choice": GENOME})
    splits: SplitConfig = field(default_factory=SplitConfig)
    # Output formats written (formats/ FORMATS); parquet always (the card and readers need it).
    formats: Annotated[tuple[str, ...], Field(strict=False)] = DEFAULT_FORMATS

    def __post_init__(self):
        for part, choice in _choices().items():
            value = getattr(self, part)
            if not isinstance(value, choice.registry[getattr(value, choice.key, None)].Config):
                raise ConfigError(
                    f"{part} must be a {choice.registry.kind}'s settings, got {value!r}"
                )
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
        return data

    def config_hash(self) -> str:
        # Attack order is part of the corpus (records interleave in that order in each tar).
        identity = {**self.to_dict(), "attack_order": list(self.attacks)}
        revised = {name: ATTACKS[name].revision for name in self.attacks if ATTACKS[name].revision}
        if revised:  # an attack that now builds other bytes: its corpora hash anew (0.10)
            identity["attack_revisions"] = revised
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> BuildConfig:
        """A copy with fields changed, re-validated. Keys may be dotted (`source.root`);
        None values are ignored, so CLI options that were not given change nothing."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if value is None:
                continue
            part, _, name = key.partition("__")
            if name:
                nested.setdefault(part, {})[name] = value
            else:
                top[key] = value
        for part, values in nested.items():
            current = top.get(part, getattr(self, part))
            choice = _choices().get(part)
            top[part] = (
                choice.update(current, values) if choice else dataclasses.replace(current, **values)
            )
        return dataclasses.replace(self, **top)

    def with_encoder(self, encoder: str | None, presets: Mapping[str, Any]) -> BuildConfig:
        """A copy whose genome is `encoder`'s (None: unchanged): the settings both encoders
        have carry over, then the builder's `presets` for `encoder`, then its defaults."""
        if encoder is None or encoder == self.genome.encoder:
            return self
        settings = {**presets.get(encoder, {}), "encoder": encoder}
        return self.replace(genome=GENOME.update(self.genome, settings))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        return from_mapping(cls, data, "")

    @classmethod
    def from_manifest(cls, config: Any) -> BuildConfig:
        """The config a manifest (or a recognizer) records, older formats' sections included
        (`Choice.recorded`)."""
        if isinstance(config, dict):
            choices = _choices()
            config = {k: choices[k].recorded(v) if k in choices else v for k, v in config.items()}
        return cls.from_dict(config)


def _choices() -> dict[str, Choice]:
    """The sections chosen by name (`source`, `genome`) and their `Choice`."""
    return {
        f.name: f.metadata["choice"]
        for f in dataclasses.fields(BuildConfig)
        if "choice" in f.metadata
    }


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


# A builder YAML's settings for encoders other than its own, taken when `--encoder` picks one
# (not part of the config: a corpus is built with one encoder).
PRESETS = "encoder_settings"


def _checked_presets(cfg: BuildConfig, presets: Any) -> dict[str, dict[str, Any]]:
    """`encoder_settings`: encoder name -> its settings, each checked now (a typo is caught
    whichever encoder is built)."""
    if not isinstance(presets, dict):
        raise ConfigError(f"{PRESETS} must map encoder names to settings, got {presets!r}")
    for name, settings in presets.items():
        ENCODERS[name]
        if not isinstance(settings, dict):
            raise ConfigError(f"{PRESETS}.{name} must be a mapping, got {settings!r}")
        GENOME.update(cfg.genome, {**settings, "encoder": name})
    return presets


def resolve_config_path(config: str | None) -> Path:
    """A YAML path, or the name of a builder shipped in `builders/` (default: digits). A name
    is never taken for a folder of the same name (a corpus built with `--out digits`)."""
    name = config or "digits"
    path = Path(name)
    if config and (path.suffix in (".yaml", ".yml") or path.is_file()):
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    builders = resource_dir("builders")
    candidate = builders / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in builders.glob("*.yaml"))
        what = "a folder, not a builder YAML" if path.is_dir() else "an unknown builder"
        raise ConfigError(f"{name!r} is {what}; shipped builders: {', '.join(known)}")
    return candidate


def load_config(
    config: str | None = None, model_code: str | None = None, encoder: str | None = None
) -> BuildConfig:
    """The builder config `config` (a shipped builder's name or a YAML path), with the genome of
    `encoder` if given (`BuildConfig.with_encoder`, the builder's `encoder_settings` for it).
    A YAML from elsewhere that names model code (`model.architecture: module:callable`) is
    refused unless the caller names the same code (`model_code`, e.g. `--model`): a config
    file alone never runs code."""
    path = resolve_config_path(config)
    try:
        data = load_yaml(path, ConfigError) or {}
        presets = data.pop(PRESETS, {}) if isinstance(data, dict) else {}
        cfg = BuildConfig.from_dict(data)
        cfg = cfg.with_encoder(encoder, _checked_presets(cfg, presets))
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
