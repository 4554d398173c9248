"""What a corpus's manifest says, parsed once into typed facts: the consumers (card, croissant,
bench, recognizer) ask `CorpusFacts`, never the manifest's dict. A saved recognizer keeps a
subset of the manifest (`SAVED_KEYS`) and reads it back through the same parse. Nothing here
imports torch or the build; the genome package only when a genome is asked for (the loaders
read no encoder)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afg_datasets.errors import CorpusError
from afg_datasets.layout import format_version
from afg_datasets.records import genome_inputs

if TYPE_CHECKING:
    from afg_datasets.genome import GenomeEncoder

# The facts a saved recognizer keeps (format_version: how its encoder stored each layer).
SAVED_KEYS = (
    "format_version",
    "name",
    "config",
    "config_hash",
    "seeds",
    "layers",
    "model",
    "source",
    "features",
)


@dataclass(frozen=True)
class Layer:
    """A tapped layer of the target model and its activation shape."""

    name: str
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class CorpusFacts:
    """A corpus's identity, source, model, layers, attacks, genome and splits, as recorded.
    `attack_params`, `splits`, `tasks`, `package_version` and `parent` are empty for a saved
    recognizer's facts (it keeps only `SAVED_KEYS`)."""

    name: str
    config_hash: str
    format_version: str  # as recorded ("0": a corpus of afg-datasets 0.2, which named none)
    config: Mapping[str, Any]  # the build config as recorded (plain mappings)
    seeds: Mapping[str, Any]
    source: Mapping[str, Any]
    model: Mapping[str, Any] | None  # (recognizers saved before 0.2 lack it)
    layers: tuple[Layer, ...]
    features: Mapping[str, Any]  # the datasets Features as JSON: `columns`, `types`
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    splits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    tasks: int = 0
    package_version: str = ""
    parent: Mapping[str, Any] | None = None  # the corpus `afg encode` re-encoded
    recorded: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, manifest: Mapping[str, Any]) -> CorpusFacts:
        """The facts of a manifest already checked against its shape (`schemas`)."""
        return cls(
            name=manifest["name"],
            config_hash=manifest["config_hash"],
            format_version=str(manifest.get("format_version", "0")),
            config=manifest["config"],
            seeds=manifest["seeds"],
            source=manifest["source"],
            model=manifest.get("model"),
            layers=tuple(
                Layer(layer["name"], layer["channels"], layer["height"], layer["width"])
                for layer in manifest["layers"]
            ),
            features=manifest["features"],
            attack_params=manifest.get("attacks", {}),
            splits=manifest.get("splits", {}),
            tasks=manifest.get("tasks", 0),
            package_version=manifest.get("package_version", ""),
            parent=manifest.get("parent"),
            recorded=manifest,
        )

    @property
    def version(self) -> tuple[int, int]:
        """The format (major, minor) the corpus was written in."""
        return format_version({"format_version": self.format_version})

    @property
    def identity(self) -> dict[str, str]:
        """What names the corpus in a report or a recognizer: its name and config hash."""
        return {"name": self.name, "config_hash": self.config_hash}

    @property
    def attacks(self) -> list[str]:
        return list(self.attack_params)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def class_names(self) -> list[str]:
        return list(self.source["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.source["class_names"])

    @property
    def genome(self) -> Mapping[str, Any]:
        """The genome section as recorded (`genome_settings` parses it)."""
        return self.config["genome"]

    @functools.cached_property
    def genome_settings(self) -> Any:
        """The genome section as its encoder's own `Config` (read as recorded: older formats'
        sections too); a ConfigError names a setting out of bounds."""
        from afg_datasets.genome import GENOME

        return GENOME.parse(GENOME.recorded(self.genome))

    @property
    def encoder(self) -> str:
        """The genome encoder's registry name (`genome.ENCODERS`)."""
        return self.genome["encoder"]

    @property
    def genome_columns(self) -> list[str]:
        return genome_inputs(self.features["columns"])

    @property
    def precision(self) -> str:
        return self.config.get("precision", "fp32")

    @property
    def batch_size(self) -> int:
        return self.config["batch_size"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[H, W, C] of every image the corpus stores (its model's input)."""
        if self.model is None:
            raise CorpusError(f"corpus {self.name!r}: its manifest records no model")
        return self.model["image_size"], self.model["image_size"], self.model["in_channels"]

    @functools.cached_property
    def encoder_text(self) -> dict[str, str]:
        """What its encoder means to a reader, in the encoder's own card file's words
        (`genome.text`: summary, settings, seeds, arrays, tags, gradient)."""
        from afg_datasets.genome.text import encoder_text

        return encoder_text(self.genome, self.layers)

    def count(self, split: str, what: str = "records") -> int:
        """Records (or `sources`) in a split; 0 for a split it lacks."""
        return self.splits.get(split, {}).get(what, 0)

    def saved(self) -> dict[str, Any]:
        """The subset of the manifest a saved recognizer keeps (`SAVED_KEYS`)."""
        return {key: self.recorded[key] for key in SAVED_KEYS if key in self.recorded}

    def difference(self, other: CorpusFacts) -> str | None:
        """What two corpora compared side by side do not share (attacks, model, sources)."""
        if other.attacks != self.attacks:
            return f"different attacks ({other.attacks} vs {self.attacks})"
        if (other.model or {}).get("sha256") != (self.model or {}).get("sha256"):
            return "a different target model"
        if other.splits != self.splits:
            return "different test sources (their splits differ)"
        return None

    def genome_encoder(self, model=None, state_dir: Path | None = None) -> GenomeEncoder:
        """The exact encoder the corpus was built with (to compute genomes of new images),
        from the genome section as recorded; an encoder with state (a basis) loads it from
        `state_dir` (the corpus's model folder)."""
        from afg_datasets.genome import EncoderInputs, StatefulEncoder, make_encoder

        inputs = EncoderInputs(
            tuple(self.layer_names),
            tuple(layer.channels for layer in self.layers),
            self.seeds["nmf"],
            model,
            (self.model["in_channels"], self.model["image_size"]) if self.model else None,
            # Layer sizes from format 1.4 (before it, `activations` pooled every layer to `size`).
            tuple(layer.height for layer in self.layers) if self.version >= (1, 4) else (),
        )
        encoder = make_encoder(self.genome_settings, inputs)
        if isinstance(encoder, StatefulEncoder):
            if state_dir is None:
                raise CorpusError(f"the {encoder.name} encoder needs its corpus's model folder")
            encoder.load_state(state_dir / encoder.STATE_FILE)
        return encoder
