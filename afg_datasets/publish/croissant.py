"""`croissant.json`: MLCommons Croissant metadata of a corpus, built with `mlcroissant`.

Every manifest file is a FileObject (contentUrl, contentSize, encodingFormat, sha256); each card
config is a record set over its parquet files with typed fields (genome arrays with their
shapes) and a `split` field read from the file name; the responsible-AI fields say how the
adversarial records were made, from what, and under which threat model. Written at finalize,
refreshed by `afg card`; `afg push` uploads a copy whose URLs point into the Hub repo.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.facts import CorpusFacts
from afg_datasets.errors import CorpusError
from afg_datasets.formats import FORMATS, TABLE_FORMAT
from afg_datasets.layout import CROISSANT_FILE, FORMAT_VERSION, SPLITS, write_json

CROISSANT_URL = "http://mlcommons.org/croissant/1.1"
ENCODINGS = {
    **{f.suffix: f.media_type for f in FORMATS.values()},
    ".json": "application/json",
}
OCTETS = "application/octet-stream"
SCHEMA_ORG = "https://schema.org/"
TEXT, INTEGER, FLOAT = (SCHEMA_ORG + t for t in ("Text", "Integer", "Float"))
SCALARS = {  # datasets Value dtype -> Croissant type
    "string": TEXT,
    "bool": SCHEMA_ORG + "Boolean",
    "float32": FLOAT,
    "float16": FLOAT,
    "int64": INTEGER,
    "uint8": INTEGER,
}


def _field_type(feature: dict[str, Any]) -> tuple[str, str | None]:
    """(Croissant data type, array shape or None) of a datasets feature."""
    kind = feature["_type"]
    if kind == "Value":
        return SCALARS[feature["dtype"]], None
    if kind == "ClassLabel":
        return INTEGER, None
    if kind == "Image":
        return SCHEMA_ORG + "ImageObject", None
    if kind == "List":
        return SCALARS[feature["feature"]["dtype"]], str(feature.get("length", -1))
    if kind.startswith("Array"):
        return SCALARS[feature["dtype"]], ",".join(map(str, feature["shape"]))
    raise CorpusError(f"manifest features: no Croissant type for feature kind {kind!r}")


def _fields(record_set: str, file_set: str, features: dict[str, Any]) -> list:
    import mlcroissant as mlc

    fields = []
    for name in features["columns"]:
        data_type, shape = _field_type(features["types"][name])
        extract = mlc.Extract(column=name)
        transforms = [mlc.Transform(json_path="bytes")] if name == "image" else []
        fields.append(
            mlc.Field(
                id=f"{record_set}/{name}",
                name=name,
                data_types=[data_type],
                is_array=shape is not None or None,
                array_shape=shape,
                source=mlc.Source(file_set=file_set, extract=extract, transforms=transforms),
            )
        )
    split = mlc.Source(
        file_set=file_set,
        extract=mlc.Extract(file_property=mlc.FileProperty.filename),
        transforms=[mlc.Transform(regex=f"^({'|'.join(SPLITS)})-.*$")],
    )
    fields.append(
        mlc.Field(
            id=f"{record_set}/split",
            name="split",
            description="train, validation or test (by source image; see the card)",
            data_types=[TEXT],
            source=split,
        )
    )
    return fields


def config_patterns(corpus: Corpus, split: str = "*") -> dict[str, list[str]]:
    """Config (`Corpus.configs`) -> the globs of its table shards (of one split, or all)."""
    return {
        config: TABLE_FORMAT.patterns(folders, split) for config, folders in corpus.configs.items()
    }


def file_url(path: str, base_url: str | None) -> str:
    return f"{base_url.rstrip('/')}/{path}" if base_url else path


AFG_CITATION = (  # as in the card
    "@article{chen2022afg, title = {A Data-driven Adversarial Examples Recognition Framework "
    "via Adversarial Feature Genome}, author = {Chen, Li and Li, Qi and Chen, Weiye and Wang, "
    "Zeyu and Li, Haifeng}, journal = {arXiv preprint arXiv:1812.10085}, year = {2022}}"
)


def describe(facts: CorpusFacts) -> dict[str, str]:
    """Description, license, citation and the responsible-AI fields, from the corpus's facts."""
    source, model = facts.source, facts.model or {}
    attacks = "; ".join(f"{name} {json.dumps(p)}" for name, p in facts.attack_params.items())
    layers = ", ".join(facts.layer_names)
    # what the corpus's encoder is, in its own card file's words (`cards/genome/<name>.md`)
    summary = facts.encoder_text["summary"]
    genome = " ".join(summary.split())  # one line
    return {
        "description": (
            f"Adversarial Feature Genome (AFG) corpus {facts.name!r}: for each "
            f"{source['name']} source image and each adversarial version of it, the genome "
            f"({genome}) of a {model['architecture']} target model's layers {layers}, with "
            "labels to detect the attack and recover the original class."
        ),
        "license": source["license"],
        "citation": f"{AFG_CITATION}\nSource images: {source['citation']}",
        "data_collection": (
            f"Source images: {source['name']} ({source['images']} images, license "
            f"{source['license']}; {source['citation']}). Target model "
            f"{model['architecture']} (test accuracy {model.get('test_accuracy')}). Adversarial "
            f"images made by advertorch attacks with these parameters: {attacks}; stored as "
            "uint8 PNG (Linf attacks kept inside their budget after rounding) and re-predicted; "
            "genomes computed from the stored images. Seeds and the full config are in "
            "manifest.json."
        ),
        "limitations": (
            "Threat model: the attacks target the classifier only and never saw a detector, so "
            "detection figures on this corpus are upper bounds against an adaptive attacker "
            "(`afg bench --adaptive`). Splits are by source image. One target model, one set "
            "of attack budgets."
        ),
        "biases": (
            f"The class balance, content and biases of {source['name']} carry over; attack "
            "success depends on the target model's own errors (records whose clean source it "
            "misclassifies are not counted as successes)."
        ),
    }


def build_metadata(corpus: Corpus, card: dict[str, Any], base_url: str | None = None):
    """The Croissant metadata (an `mlcroissant.Metadata`) of a corpus; file URLs relative to
    the corpus, or under `base_url` (the pushed copy: `<endpoint>/datasets/NS/NAME/resolve/REV`).
    mlcroissant is imported here only: the card and push need none of it otherwise."""
    import mlcroissant as mlc

    files = [
        mlc.FileObject(
            id=entry["path"],
            name=entry["path"],
            content_url=file_url(entry["path"], base_url),
            content_size=f"{entry['bytes']} B",
            encoding_formats=[
                ENCODINGS.get(Path(entry["path"]).suffix, "application/octet-stream")
            ],
            sha256=entry["sha256"],
        )
        for entry in corpus.files()
    ]
    facts = corpus.facts
    file_sets, record_sets = [], []
    for config, includes in config_patterns(corpus).items():
        file_set = f"{TABLE_FORMAT.name}-{config}"
        file_sets.append(
            mlc.FileSet(
                id=file_set,
                name=file_set,
                encoding_formats=[TABLE_FORMAT.media_type],
                includes=includes,
            )
        )
        record_sets.append(
            mlc.RecordSet(
                id=config,
                name=config,
                description=f"config {config!r} of the card",
                fields=_fields(config, file_set, facts.features),
            )
        )
    return mlc.Metadata(
        name=facts.name,
        description=card["description"],
        license=card["license"],
        url=base_url.split("/resolve/")[0] if base_url else None,
        version=f"{FORMAT_VERSION}.0",  # the corpus format's version
        cite_as=card["citation"],
        date_published=None,
        distribution=[*files, *file_sets],
        record_sets=record_sets,
        data_collection=card["data_collection"],
        data_limitations=card["limitations"],
        data_biases=card["biases"],
        conforms_to=CROISSANT_URL,
    )


def croissant_document(corpus: Corpus, base_url: str | None = None) -> dict[str, Any]:
    """The JSON-LD document; a CorpusError when mlcroissant finds it invalid."""
    absl = logging.getLogger("absl")  # mlcroissant logs recommendations (datePublished: left
    level = absl.level  # out, so the same corpus gives the same bytes) as warnings
    absl.setLevel(logging.ERROR)
    try:
        metadata = build_metadata(corpus, describe(corpus.facts), base_url)
    finally:
        absl.setLevel(level)
    issues = metadata.ctx.issues
    if issues.errors:
        raise CorpusError(f"croissant.json: invalid: {sorted(issues.errors)[0]}")
    return metadata.to_json()


def write_croissant(corpus: Corpus) -> None:
    write_json(corpus.root / CROISSANT_FILE, croissant_document(corpus))
