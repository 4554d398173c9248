"""The house rules, counted from the source (`tests/house_counts.py`): consumers ask the corpus's
typed facts, never its manifest dict; the record's fields are listed once; wings take a
`Corpus`, opened once by the CLI; modules stay short."""

from __future__ import annotations

from pathlib import Path

from afg_datasets.records import RECORD_COLUMNS
from tests.house_counts import RECORD_FIELDS, counts

PACKAGE = Path(__file__).parents[1] / "afg_datasets"
LIMITS = {  # at most (issue #41's targets)
    "manifest reads outside corpus/, building/, CLI, printers": 0,
    "manifest parameters outside corpus/, building/": 0,
    "hand-written lists of >= 3 record fields outside records.py": 1,
    "hasattr(encoder, ...) probes": 0,
    "Corpus | str signatures": 6,
    "evaluation -> publish imports": 0,
    "recognizer.py -> config imports": 0,
    "longest module (lines)": 350,
    "evaluation/bench.py (lines)": 200,
}


def test_the_house_counts_stay_within_their_limits():
    found = counts(PACKAGE)
    over = {name: (found[name], limit) for name, limit in LIMITS.items() if found[name] > limit}
    assert not over, f"(found, limit): {over}"


def test_the_counter_knows_every_record_field():
    assert [column.name for column in RECORD_COLUMNS] == RECORD_FIELDS
