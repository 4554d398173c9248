"""The stranger's journey, measured (issue #38's targets): a 300-source default corpus and its
`groupmap` and `groupbasis` re-encodings, each with a recognizer (5 epochs).

- Opening a Hub corpus from another machine (`tests/fetch_bench.py`): the corpus pushed to the
  loopback Hub beside 2,000 unlisted files of 100 kB, then `afg verify REPO` twice on a fresh
  machine (own HOME, HF and AFG caches), `--runs` times: the bytes the Hub served over the
  manifest's bytes, and what the second open fetched.
- Predict on a corpus's own stored images against predict on its stored genomes
  (`tests/predict_agreement.py`), test and train splits: the share of records whose genome is
  the stored one bit for bit, and whose class and adversarial flag agree.

Writes stranger_journey.json beside this script and prints the table docs/benchmarks.md shows.

    python docs/benchmarks/stranger_journey.py [--runs 3]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from figures import afg, machine, main, markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests/ helpers
from tests.fetch_bench import measure as fetch  # noqa: E402
from tests.predict_agreement import agreement  # noqa: E402

ENCODERS = ("groupmap", "groupbasis")  # re-encodings of the default (`activations`) corpus


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {"activations": Path(tmp) / "afg"}
        afg("build-shards", "--limit", "300", "--out", str(corpora["activations"]), "--no-progress")
        for encoder in ENCODERS:
            corpora[encoder] = Path(tmp) / encoder
            args = ["--encoder", encoder, "--out", str(corpora[encoder]), "--no-progress"]
            afg("encode", str(corpora["activations"]), *args)
        agreements = []
        for encoder, corpus in corpora.items():
            recognizer = str(Path(tmp) / f"rec-{encoder}")
            afg("fit-recognizer", str(corpus), "--out", recognizer, "--epochs", "5")
            for split in ("test", "train"):
                row = agreement(str(corpus), recognizer, split)
                agreements.append({**row, "corpus": f"--limit 300, {encoder}"})
        opened = fetch(corpora["activations"], 2000, 100_000, runs)
    opened["corpus"] = "--limit 300, activations"
    return {"machine": machine(), "runs": runs, "fetch": opened, "predict": agreements}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    fetched = result["fetch"]
    rows = [
        [
            "`afg verify REPO` on a fresh machine: bytes served / the manifest's "
            f"({fetched['manifest_bytes'] / 1e6:.1f} MB listed; repo "
            f"{fetched['repo_bytes'] / 1e6:.1f} MB in {fetched['repo_files']:,} files)",
            f"{fetched['fetched_over_manifest']:.3f}x, median {fetched['first_open_s']:.2f} s",
            "<= 1.05x",
        ],
        [
            "the same revision opened again",
            f"{fetched['second_open_bytes']} bytes, median {fetched['second_open_s']:.2f} s",
            "0 bytes",
        ],
    ]
    rows += [
        [
            f"predict on stored images vs stored genomes: {row['encoder']}, {row['split']} "
            f"({row['records']} records)",
            f"genomes equal {row['genome_equal']:.1%}, classes {row['class_agree']:.1%}, "
            f"flags {row['flag_agree']:.1%}",
            "100 %",
        ]
        for row in result["predict"]
    ]
    return markdown(["figure", "value", "target"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
