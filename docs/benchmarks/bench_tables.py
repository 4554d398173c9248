"""What the study scripts share: `afg bench` run on a corpus, its report kept, and the three
tables the study shows of a report: detection and recovery per setting, AFG minus the matched
raw-pixel control with the paired interval, and the adaptive attacker."""

from __future__ import annotations

import json
import time
from pathlib import Path

from figures import afg, machine, markdown

DETECTORS = ("afg", "raw_pixels", "mahalanobis", "lid")
RECOVERERS = ("afg", "raw_pixels")


def bench(corpus: Path, *args: str, command: str) -> dict:
    """`afg bench CORPUS ARGS`, timed; its report (bench/results.json) with the machine and
    the `command` that made the corpus and ran it."""
    start = time.perf_counter()
    afg("bench", str(corpus), *args)
    seconds = round(time.perf_counter() - start, 1)
    report = json.loads((corpus / "bench" / "results.json").read_text())
    report["corpus"].pop("path", None)  # a temporary folder
    return {"machine": machine(), "command": command, "bench_seconds": seconds, "report": report}


def _cell(row: dict | None, key: str, interval: bool = True) -> str:
    if row is None or row.get(key) is None:
        return "–"
    low, high = (row.get("ci") or {}).get(key) or (None, None)
    text = f"{row[key]:.3f}"
    return f"{text} [{low:.3f}, {high:.3f}]" if interval and low is not None else text


def _setting(row: dict) -> str:
    held = ",".join(row.get("held_out") or [])
    return f"{row['setting']} ({held} out)" if row["setting"] == "family" else row["setting"]


def results_rows(report: dict) -> str:
    rows = {(r["method"], _setting(r), r["attack"]): r for r in report["results"]}
    keys = [(s, a) for m, s, a in rows if m == "afg"]
    header = [
        "setting",
        "attack",
        *(f"AUROC {m}" for m in DETECTORS),
        *(f"recovery {m}" for m in RECOVERERS),
        "test records",
    ]
    table = [
        [
            setting,
            attack,
            *(
                _cell(rows.get((m, setting, attack)), "detection_auroc", m in RECOVERERS)
                for m in DETECTORS
            ),
            *(_cell(rows.get((m, setting, attack)), "recovery_acc") for m in RECOVERERS),
            rows[("afg", setting, attack)]["n"],
        ]
        for setting, attack in keys
    ]
    return markdown(header, table)


def comparison_rows(report: dict) -> str:
    """AFG minus the matched raw-pixel control, AUROC and recovery: the difference, its paired
    interval and verdict, and the training seeds a shown difference needs where the run had
    fewer (the report's `seeds_needed`)."""
    seeds = report["protocol"]["seeds"]
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for c in report["comparisons"]:
        if c["versus"] == "raw_pixels" and c["metric"] in ("detection_auroc", "recovery_acc"):
            ci = f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else ""
            cell = f"{c['difference']:+.3f} {ci}: {c['verdict']}"
            if c["verdict"] != "no difference shown" and (c.get("seeds_needed") or 0) > seeds:
                cell += f" (needs {c['seeds_needed']} seeds)"  # the seed spread, not yet carried
            pairs.setdefault((c["setting"], c["attack"]), {})[c["metric"]] = cell
    rows = [
        [setting, attack, cells.get("detection_auroc", "–"), cells.get("recovery_acc", "–")]
        for (setting, attack), cells in pairs.items()
    ]
    return markdown(["setting", "attack", "AUROC difference", "recovery difference"], rows)


def adaptive_rows(report: dict) -> str:
    block = report["adaptive"]
    modes = {(r["method"], r["attack"], r["mode"]): r for r in block["rows"]}
    rows = [
        [
            method,
            attack,
            f"{_cell(modes.get((method, attack, 'non-adaptive')), 'detection_rate')} -> "
            f"**{_cell(row, 'detection_rate')}**",
            _cell(row, "evasion_rate"),
            _cell(row, "recovery_acc", False),
        ]
        for (method, attack, mode), row in modes.items()
        if mode == "adaptive"
    ]
    header = [
        "detector",
        "attack",
        "detected: non-adaptive -> adaptive",
        "evades, adaptive",
        "recovery, adaptive",
    ]
    return markdown(header, rows)


def tables(result: dict) -> str:
    """The three markdown tables of a bench result (what docs/study.md carries)."""
    report = result["report"]
    parts = [results_rows(report), comparison_rows(report)]
    return "\n\n".join(parts + ([adaptive_rows(report)] if report.get("adaptive") else []))
