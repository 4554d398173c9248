"""The model card of a saved recognizer (huggingface_hub's ModelCard, cards/ template)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.facts import CorpusFacts
from afg_datasets.resources import resource_dir

TEMPLATE = "afg_recognizer_card.md"
NO_BENCH_THREAT_MODEL = (
    "Not measured: without bench results no attacker has been evaluated against this "
    "recognizer. `afg bench --adaptive` adds a white-box attacker that differentiates "
    "through the target model, the genome encoder and the recognizer."
)


def write_model_card(path: Path, info: dict, facts: CorpusFacts, corpus: Corpus | None) -> Path:
    """README.md for a saved recognizer: corpus, config hash, bench table and threat model
    (from the corpus's bench results when it has them)."""
    bench = _bench(corpus)
    card = ModelCard.from_template(
        ModelCardData(
            library_name="afg-datasets",
            license="apache-2.0",
            tags=["afg", "adversarial-detection", "adversarial-examples"],
            pipeline_tag="image-classification",
        ),
        template_path=str(resource_dir("cards") / TEMPLATE),
        corpus_name=facts.name,
        config_hash=facts.config_hash,
        model=facts.model,
        genome=facts.genome,
        layers=facts.layer_names,
        inputs=info["inputs"],
        objective=info["objective"],
        seed=info["seed"],
        epochs=info.get("epochs"),
        best_val_loss=float(info.get("best_val_loss", float("nan"))),
        **bench,
    )
    card.save(path)
    return path


def _bench(corpus: Corpus | None) -> dict[str, str]:
    report = corpus.bench_report() if corpus else None
    if report is None:
        return {"threat_model": NO_BENCH_THREAT_MODEL}
    threat = report.get("protocol", {}).get("threat_model", "")
    adaptive = report.get("adaptive") or {}
    if adaptive.get("threat_model"):
        threat += f". Adaptive rows: {adaptive['threat_model']}."
    return {
        "bench_table": corpus.bench_table() or "",
        "bench_verdict": str(report.get("verdict", "")),  # the bench's own sentences
        "threat_model": threat,
    }
