"""Adversarial feature separability, measured: `afg afs DIR` on the default digits corpus and on
a 2,000-source MNIST corpus (`afg build-shards mnist --source-root ../shared/data/mnist --limit
2000`), each as built (`activations`) and re-encoded with `afg encode --encoder groupmap` (the
paper's per-image NMF), model cached. Per corpus and representation, the median normalized
distance between an adversarial record and its clean original at each layer, test split (the
distance over the median distance between two clean images of one class). Writes afs.json
beside this script and prints the table docs/study.md shows.

    python docs/benchmarks/afs.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from figures import afg, machine, main, markdown

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
CORPORA = {
    "default digits": [],
    "MNIST, `--limit 2000`": ["mnist", "--source-root", str(MNIST), "--limit", "2000"],
}


def separability(corpus: Path) -> dict:
    afg("afs", str(corpus))
    return json.loads((corpus / "afs.json").read_text())


def measure(runs: int) -> dict:
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, build) in enumerate(CORPORA.items()):
            built, nmf = Path(tmp) / f"c{i}", Path(tmp) / f"c{i}-groupmap"
            afg("build-shards", *build, "--out", str(built), "--no-progress")
            afg("encode", str(built), "--encoder", "groupmap", "--out", str(nmf), "--no-progress")
            figures[name] = {"activations": separability(built), "groupmap": separability(nmf)}
    return {"machine": machine(), "corpora": figures}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/study.md carries)."""
    rows = []
    for name, genomes in result["corpora"].items():
        for genome, afs in genomes.items():
            attacks = list(afs["curves"]["genome"])
            for representation, label in (
                ("raw", "raw activations"),
                ("genome", f"{genome} genome"),
            ):
                if representation == "raw" and genome != "activations":
                    continue  # the same activations: one row per corpus
                curves = afs["curves"][representation]
                rows.append(
                    [
                        f"{name} ({afs['records']} records)",
                        label,
                        *(
                            " / ".join(f"{layer['median']:.2f}" for layer in curves[a])
                            for a in attacks
                        ),
                    ]
                )
    return markdown(["corpus", "representation", *attacks], rows)


if __name__ == "__main__":
    main(__file__, measure, table, runs=1)  # a deterministic figure: one run
