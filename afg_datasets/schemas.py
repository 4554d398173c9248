"""The shapes of the JSON files a corpus or build holds (manifest, plan, task markers, stats), as
pydantic TypedDicts. A file read from disk is checked against its shape before any field is
used, so a malformed or hostile file is one `CorpusError` naming the file and the field, never
a KeyError or TypeError deep inside verify, card, finalize, load or push. Extra keys are allowed
(newer writers may add some); only what the readers use is required."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import NotRequired, TypedDict

from afg_datasets.bounds import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    MAX_LAYERS,
    MAX_SOURCES,
)

STRICT = ConfigDict(strict=True, allow_inf_nan=False)
Count = Annotated[int, Field(ge=0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


@with_config(STRICT)
class FileEntry(TypedDict):
    path: str
    sha256: Sha256
    bytes: Count
    rows: Count | None


@with_config(STRICT)
class SplitCounts(TypedDict):
    sources: Count
    records: Count


@with_config(STRICT)
class SourceFacts(TypedDict):
    name: str
    images: Count
    license: str
    citation: str
    class_names: list[str]


@with_config(STRICT)
class LayerShape(TypedDict):
    name: str
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
    height: Annotated[int, Field(ge=1, le=MAX_IMAGE_SIZE)]
    width: Annotated[int, Field(ge=1, le=MAX_IMAGE_SIZE)]


Layers = Annotated[list[LayerShape], Field(min_length=1, max_length=MAX_LAYERS)]
LAYERS = TypeAdapter(Layers)


@with_config(STRICT)
class Parent(TypedDict):
    name: str
    config_hash: str
    manifest_sha256: NotRequired[Sha256]  # format 1.3: the parent's identity


@with_config(STRICT)
class Manifest(TypedDict):
    format_version: NotRequired[Any]  # checked by layout.check_format (absent: format 0)
    name: str
    config: dict[str, Any]
    config_hash: str
    source: SourceFacts
    model: dict[str, Any]
    layers: Layers
    attacks: dict[str, dict[str, Any]]
    features: dict[str, Any]
    splits: dict[str, SplitCounts]
    files: list[FileEntry]
    parent: NotRequired[Parent]  # format 1.1: the corpus `afg encode` re-encoded


@with_config(STRICT)
class TaskEntry(TypedDict):
    id: Count
    start: Count
    stop: Count
    seed: Count


@with_config(STRICT)
class Plan(TypedDict):
    format_version: NotRequired[Any]
    config: dict[str, Any]
    config_hash: str
    tasks: list[TaskEntry]
    source: SourceFacts
    splits: dict[str, SplitCounts]
    attacks: dict[str, dict[str, Any]]


@with_config(STRICT)
class Tally(TypedDict):
    records: Count
    eligible: Count
    successes: Count
    linf: float
    l2: float


@with_config(STRICT)
class Marker(TypedDict):
    task: Count
    worker: int
    device: str
    torch_threads: Count
    started: float
    finished: float
    peak_rss_mb: float
    tallies: dict[str, Tally]
    stages: dict[str, float]
    files: list[FileEntry]
    skipped: NotRequired[dict[str, list[str]]]
    runs: NotRequired[list[list[float]]]  # [started, finished] of each run (afg extend adds one)


@with_config(STRICT)
class Stats(TypedDict):
    records: Count
    attacks: dict[str, dict[str, Any]]
    clean: dict[str, Any]
    stages: dict[str, dict[str, Any]]


def _below(high: int) -> Any:
    return Annotated[int, Field(ge=0, le=high)]


@with_config(STRICT)
class ModelInfoShape(TypedDict):
    """model/model.json (and a recognizer's target_model/model.json), numbers bounded."""

    architecture: str
    in_channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    image_size: Annotated[int, Field(ge=1, le=MAX_IMAGE_SIZE)]
    mean: Annotated[list[float], Field(max_length=MAX_CHANNELS)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(max_length=MAX_CHANNELS)]
    layers: Annotated[list[str], Field(max_length=MAX_LAYERS)]
    seed: _below(2**63 - 1)
    test_accuracy: Annotated[float, Field(ge=0, le=1)]
    train_images: _below(MAX_SOURCES)
    test_images: _below(MAX_SOURCES)
    weights: NotRequired[str]
    checkpoint_sha256: NotRequired[str | None]


@with_config(STRICT)
class FeatureSchema(TypedDict):
    columns: Annotated[list[str], Field(min_length=1, max_length=256)]
    types: dict[str, dict[str, Any]]


@with_config(STRICT)
class Seeds(TypedDict):
    nmf: _below(2**63 - 1)


@with_config(STRICT)
class PredictConfig(TypedDict):
    """The parts of a recorded build config that computing a genome of new images uses (the
    genome section is checked by its encoder's own Config)."""

    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)]
    genome: dict[str, Any]


@with_config(STRICT)
class RecognizerFacts(TypedDict):
    format_version: NotRequired[str]  # saved since 0.9: the genome is computed as that format's
    name: str
    config_hash: str
    config: PredictConfig
    seeds: Seeds
    layers: Layers
    model: ModelInfoShape
    source: dict[str, Any]
    features: FeatureSchema


@with_config(STRICT)
class SavedRecognizer(TypedDict):
    """recognizer.json: what `Recognizer.from_pretrained` reads before building anything."""

    inputs: Annotated[list[str], Field(min_length=1, max_length=16)]
    manifest: RecognizerFacts


SHAPES: dict[str, TypeAdapter] = {
    "recognizer": TypeAdapter(SavedRecognizer),
    "model_info": TypeAdapter(ModelInfoShape),
    "manifest": TypeAdapter(Manifest),
    "plan": TypeAdapter(Plan),
    "marker": TypeAdapter(Marker),
    "stats": TypeAdapter(Stats),
}
