"""The bench's verdict in plain sentences, decided by its paired intervals; written into
results.json (`verdict`) so cards embed it as text and read nothing else of the bench."""

from __future__ import annotations

from typing import Any


def verdict(report: dict[str, Any]) -> str:
    """Plain sentences decided by the paired bootstrap intervals: on how many attacks does AFG
    beat the raw-pixel control (interval of the difference above zero), lose, or neither?"""
    comparisons = report.get("comparisons") if isinstance(report, dict) else None
    if not isinstance(comparisons, list):
        return ""
    pairs = sorted(  # (AFG, its raw-pixel control): one pair, or one per genome of `afg bench A B`
        {
            (c.get("first", "afg"), c.get("versus", "raw_pixels"))
            for c in comparisons
            if _method(c.get("first", "afg")) == "afg"
            and _method(c.get("versus", "raw_pixels")) == "raw_pixels"
        }
    )
    parts = [part for first, versus in pairs for part in _sentences(comparisons, first, versus)]
    if not parts:
        return ""
    text = (
        "; ".join(parts)
        + " (paired 95 % bootstrap intervals over test source images and training seeds)."
    )
    return text + _adaptive_sentence(report.get("adaptive"))


def _method(label: str) -> str:
    """The method of a comparison's label (`afg`, or `afg:<genome>` in `afg bench A B`)."""
    return str(label).partition(":")[0]


def _sentences(comparisons: list, first: str, versus: str) -> list[str]:
    genome = first.partition(":")[2]
    who = f"AFG ({genome})" if genome else "AFG"
    parts = []
    for label, setting, metric in (
        ("recovery (seen)", "seen", "recovery_acc"),
        ("recovery on unseen attacks", "unseen", "recovery_acc"),
        ("detection AUROC on unseen attacks", "unseen", "detection_auroc"),
        ("recovery with a norm family held out", "family", "recovery_acc"),
        ("detection AUROC with a norm family held out", "family", "detection_auroc"),
    ):
        rows = [
            c
            for c in comparisons
            if c.get("setting") == setting
            and c.get("metric") == metric
            and c.get("attack") != "overall"
            and c.get("versus", "raw_pixels") == versus
            and c.get("first", "afg") == first
        ]
        if not rows:
            continue
        better = sum(str(c.get("verdict")).startswith("afg") for c in rows)
        worse = sum(str(c.get("verdict")).startswith("raw pixels") for c in rows)
        parts.append(
            f"{label}: {who} beats the raw-pixel control on {better} of {len(rows)} attacks, "
            f"loses on {worse}, and no difference is shown on {len(rows) - better - worse}"
        )
    return parts


def _adaptive_sentence(block: Any) -> str:
    """How much of each detector survives the white-box attacker (interval upper bounds)."""
    rows = block.get("rows") if isinstance(block, dict) else None
    if not isinstance(rows, list):
        return ""
    try:
        parts = [
            f"{r['method']} {r['attack']}: {r['detection_rate']:.2f} of successful "
            f"adversarials detected (95 % interval up to {r['ci']['detection_rate'][1]:.2f})"
            for r in rows
            if r.get("mode") == "adaptive" and r.get("detection_rate") is not None
        ]
    except (KeyError, TypeError, IndexError, AttributeError):
        return ""  # a results.json this version did not write: no sentence
    if not parts:
        return ""
    return (
        " Against an adaptive white-box attacker (see the threat model below): "
        + "; ".join(parts)
        + ". Every figure above assumes an attacker who ignores the detector."
    )
