"""The model card of a saved recognizer (huggingface_hub's ModelCard, cards/ template)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from afg_datasets.documents import read_text
from afg_datasets.errors import CorpusError
from afg_datasets.layout import BENCH_DIR, read_json
from afg_datasets.resources import resource_dir

TEMPLATE = "afg_recognizer_card.md"
NO_BENCH_THREAT_MODEL = (
    "Not measured: without bench results no attacker has been evaluated against this "
    "recognizer. `afg bench --adaptive` adds a white-box attacker that differentiates "
    "through the target model, the genome encoder and the recognizer."
)


def write_model_card(path: Path, info: dict, corpus_dir: Path | None) -> Path:
    """README.md for a saved recognizer: corpus, config hash, bench table and threat model
    (from the corpus's `bench/` when it has one)."""
    manifest = info["manifest"]
    bench = _bench(corpus_dir)
    card = ModelCard.from_template(
        ModelCardData(
            library_name="afg-datasets",
            license="apache-2.0",
            tags=["afg", "adversarial-detection", "adversarial-examples"],
            pipeline_tag="image-classification",
        ),
        template_path=str(resource_dir("cards") / TEMPLATE),
        corpus_name=manifest["name"],
        config_hash=manifest["config_hash"],
        model=manifest["model"],
        genome=manifest["config"]["genome"],
        layers=[layer["name"] for layer in manifest["layers"]],
        inputs=info["inputs"],
        objective=info["objective"],
        seed=info["seed"],
        epochs=info.get("epochs"),
        best_val_loss=float(info.get("best_val_loss", float("nan"))),
        **bench,
    )
    card.save(path)
    return path


def _bench(corpus_dir: Path | None) -> dict[str, str]:
    results = corpus_dir / BENCH_DIR / "results.json" if corpus_dir else None
    if results is None or not results.is_file():
        return {"threat_model": NO_BENCH_THREAT_MODEL}
    report = read_json(results)
    if not isinstance(report, dict):
        return {"threat_model": NO_BENCH_THREAT_MODEL}
    threat = report.get("protocol", {}).get("threat_model", "")
    adaptive = report.get("adaptive") or {}
    if adaptive.get("threat_model"):
        threat += f". Adaptive rows: {adaptive['threat_model']}."
    return {
        "bench_table": read_text(corpus_dir / BENCH_DIR / "results.md", CorpusError),
        "bench_verdict": str(report.get("verdict", "")),  # the bench's own sentences
        "threat_model": threat,
    }
