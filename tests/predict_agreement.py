"""Predict on stored images against predict on stored genomes, measured:
`python -m tests.predict_agreement CORPUS RECOGNIZER [--split test]`.

Reads the split's records as `load_dataset` gives them, recomputes their genomes from the
stored images through the saved recognizer (`Recognizer.genomes`), and prints, as JSON, the
share of records whose every genome column equals the stored one bit for bit, and the share
whose class and adversarial flag (at 0.5) agree between `predict(images)` and
`predict_genomes(stored genomes, stored preds)`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from datasets import load_dataset

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.recognizer import Recognizer


def agreement(corpus_path: str, recognizer_path: str, split: str = "test") -> dict:
    """The shares, for one split of a corpus and a recognizer fitted on it (see above)."""
    corpus = Corpus.open(corpus_path).verify()
    files = [str(p) for p in corpus.paths(split=split)]
    rows = load_dataset("parquet", data_files=files, split="train").with_format("numpy")[:]
    recognizer = Recognizer.from_pretrained(recognizer_path)
    preds, genome = recognizer.genomes(rows["image"])
    stored = {name: rows[name] for name in corpus.genome_columns}
    equal = np.ones(len(preds), dtype=bool)
    for name, values in stored.items():
        equal &= (genome[name] == values).reshape(len(preds), -1).all(1)
    images = recognizer.predict(rows["image"])
    genomes = recognizer.predict_genomes(stored, rows["pred"])
    return {
        "corpus": corpus_path,
        "encoder": corpus.encoder,
        "split": split,
        "records": len(preds),
        "target_preds_equal": float(np.mean(preds == rows["pred"])),
        "genome_equal": float(np.mean(equal)),
        "class_agree": float(np.mean(images[1] == genomes[1])),
        "flag_agree": float(np.mean((images[0] > 0.5) == (genomes[0] > 0.5))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("recognizer")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    print(json.dumps(agreement(args.corpus, args.recognizer, args.split)))


if __name__ == "__main__":
    main()
