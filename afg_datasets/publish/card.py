"""Dataset card: YAML metadata through huggingface_hub/datasets objects, body from cards/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from afg_datasets.corpus.corpus import DEFAULT_CONFIG, Corpus
from afg_datasets.files import atomic_write
from afg_datasets.formats import TABLE_FORMAT, format_of, split_of_shard, task_of_shard
from afg_datasets.formats.parquet import ROW_GROUP_BYTES
from afg_datasets.genome.text import encoder_tags
from afg_datasets.layout import (
    AFS_PNG,
    ATLAS_FILE,
    CARD_FILE,
    EXAMPLES_PNG,
    MODEL_DIR,
    SPLITS,
)
from afg_datasets.publish.croissant import config_patterns, write_croissant
from afg_datasets.publish.examples import write_examples
from afg_datasets.records import FIELD_DOCS, features_from_json
from afg_datasets.resources import resource_dir

TEMPLATE = "afg_dataset_card.md"


def size_category(n: int) -> str:
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ]
    return next((label for bound, label in bounds if n < bound), "n>10M")


def config_layout(corpus: Corpus) -> dict[str, dict[str, list[dict]]]:
    """Config (`Corpus.configs`) -> split -> its table shards' entries (splits with none left
    out)."""
    layout = {}
    for config in corpus.configs:
        files = {s: corpus.files(TABLE_FORMAT.name, s, config) for s in SPLITS}
        layout[config] = {s: entries for s, entries in files.items() if entries}
    return layout


# Hub ids of the sources a corpus extends (Hub convention `extended|<id>`); others: original.
SOURCE_HUB_IDS = {
    "mnist": "ylecun/mnist",
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "imagenet": "ILSVRC/imagenet-1k",
}


def card_data(corpus: Corpus) -> DatasetCardData:
    """Hub metadata: configs, and per config the Arrow size of each split (`num_bytes`,
    `dataset_size`) beside the parquet bytes (`download_size`)."""
    facts, root = corpus.facts, corpus.root
    features = features_from_json(facts.features)
    layout = config_layout(corpus)
    total = sum(e["rows"] for e in corpus.files(TABLE_FORMAT.name))
    data = DatasetCardData(
        pretty_name=f"AFG: {facts.name}",
        license=facts.source["license"],
        task_categories=["image-classification"],
        tags=[
            "adversarial-examples",
            "adversarial-robustness",
            "adversarial-feature-genome",
            "interpretability",
            *encoder_tags(facts.encoder_text),
        ],
        task_ids=["multi-class-image-classification", "multi-label-image-classification"],
        size_categories=[size_category(total)],
        source_datasets=[
            f"extended|{SOURCE_HUB_IDS[name]}" if name in SOURCE_HUB_IDS else "original"
            for name in [facts.source["name"]]
        ],
    )
    MetadataConfigs(
        {
            name: {
                "data_files": [
                    {"split": s, "path": config_patterns(corpus, s)[name]} for s in splits
                ],
                **({"default": True} if name == DEFAULT_CONFIG else {}),
            }
            for name, splits in layout.items()
        }
    ).to_dataset_card_data(data)
    infos = {}
    for name, splits in layout.items():
        split_dict = SplitDict()
        for split, files in splits.items():
            split_dict.add(
                SplitInfo(
                    name=split,
                    num_bytes=sum(TABLE_FORMAT.arrow_bytes(root / f["path"]) for f in files),
                    num_examples=sum(f["rows"] for f in files),
                )
            )
        infos[name] = DatasetInfo(
            features=features,
            splits=split_dict,
            dataset_size=sum(i.num_bytes for i in split_dict.values()),
            download_size=sum(f["bytes"] for files in splits.values() for f in files),
        )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def schema_rows(features: Features) -> list[tuple[str, str, str]]:
    rows = []
    for name, feature in features.items():
        kind = type(feature).__name__
        if hasattr(feature, "shape"):
            kind = f"{kind}{list(feature.shape)} {feature.dtype}"
        elif hasattr(feature, "dtype") and kind == "Value":
            kind = feature.dtype
        doc = FIELD_DOCS.get(name, "Genome array (see below).")
        rows.append((name, kind, doc))
    return rows


def optional_sections(corpus: Corpus) -> dict[str, Any]:
    """Figures and tables that later analyses leave in the corpus directory, when present."""
    root, extras = corpus.root, {}
    if (root / EXAMPLES_PNG).is_file():
        extras["examples_figure"] = EXAMPLES_PNG
    if (root / MODEL_DIR / ATLAS_FILE).is_file():
        extras["atlas_figure"] = f"{MODEL_DIR}/{ATLAS_FILE}"
    if (root / AFS_PNG).is_file():
        extras["afs_figure"] = AFS_PNG
        extras["afs_sentence"] = corpus.afs_summary() or ""
    table = corpus.bench_table()
    if table is not None:
        extras["bench_table"] = table
        report = corpus.bench_report()  # the bench's own sentences, as text
        extras["bench_verdict"] = str(report.get("verdict", "")) if report else ""
    return extras


def render_card(
    corpus: Corpus,
    stats: dict[str, Any],
    load_path: str = "afg",
    published: bool = False,
) -> DatasetCard:
    """The card; `published`: `load_path` is the Hub repo id it is pushed to."""
    facts = corpus.facts
    shards = [e["path"] for e in corpus.files() if format_of(e["path"])]
    train_tasks = [task_of_shard(path) for path in shards if split_of_shard(path) == "train"]
    return DatasetCard.from_template(
        card_data(corpus),
        template_path=str(resource_dir("cards") / TEMPLATE),
        pretty_name=f"AFG: {facts.name}",
        package_version=facts.package_version,
        format_version=facts.format_version,
        row_group_mib=ROW_GROUP_BYTES // 2**20,
        files=corpus.files(),
        config_hash=facts.config_hash,
        source=facts.source,
        num_classes=facts.num_classes,
        model=facts.model,
        layers=facts.layers,
        genome=facts.genome,
        encoder_text=facts.encoder_text,
        precision=facts.precision,
        seeds=facts.seeds,
        attack_stats=stats["attacks"],
        attack_params={k: _compact(v) for k, v in facts.attack_params.items()},
        clean=stats["clean"],
        schema=schema_rows(features_from_json(facts.features)),
        splits=facts.splits,
        load_path=load_path,
        published=published,
        first_attack=facts.attacks[0],
        formats={format_of(path).name for path in shards},
        parent=facts.parent,
        wds_train_last=max(train_tasks, default=0),
        num_tasks=facts.tasks,
        license=facts.source["license"],
        **optional_sections(corpus),
    )


def _compact(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def write_card(corpus: Corpus, stats: dict[str, Any]) -> Path:
    """The card (README.md), and its examples figure first where the corpus has none."""
    write_examples(corpus)
    card = render_card(corpus, stats, load_path=corpus.root.name or "afg")
    path = corpus.root / CARD_FILE
    atomic_write(path, lambda handle: handle.write(str(card).encode()))
    return path


def refresh_card(corpus: Corpus) -> Path:
    """Rewrite a finished corpus's card and croissant.json from its manifest and stats (after
    bench, afs)."""
    write_croissant(corpus)
    return write_card(corpus, corpus.stats())
