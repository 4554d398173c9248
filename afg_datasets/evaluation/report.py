"""What `afg bench` writes: results.json, results.md (the tables the card embeds) and roc.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score, roc_curve

from afg_datasets.evaluation.adaptive import METRICS as ADAPTIVE_METRICS
from afg_datasets.evaluation.intervals import METRICS
from afg_datasets.evaluation.verdict import verdict
from afg_datasets.files import atomic_write, owned_folder, save_figure
from afg_datasets.layout import BENCH_RESULTS, BENCH_TABLE, write_json

COLUMNS = {
    "detection_auroc": "AUROC",
    "tpr_at_5fpr": "TPR@5%FPR (test ROC)",
    "tpr_at_val_threshold": "TPR @ val thr.",
    "fpr_at_val_threshold": "FPR @ val thr.",
    "detection_acc": "det. acc",
    "recovery_acc": "recovery",
    "clean_acc": "clean acc",
    "end_to_end_acc": "end-to-end",
    "success_rate": "attack success",
    "detection_rate": "detected (of successes)",
    "evasion_rate": "evades (fooled, not flagged)",
    "implied_robust_acc": "implies robust acc. at eps/2 (Tramer)",
}


def _fmt(row: dict, key: str) -> str:
    """`mean [low, high] ±std`: the 95 % bootstrap interval, then the seed spread."""
    value, std, ci = row[key], row["std"].get(key), row.get("ci", {}).get(key)
    if value is None:
        return "–"
    text = f"{value:.3f}"
    if ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text + (f" ±{std:.3f}" if std else "")


def _table(head: list[str], keys: tuple[str, ...], rows: list[dict]) -> str:
    names = [*head, *(COLUMNS[k] for k in keys), "n"]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        cells = [str(r[h]) for h in head] + [_fmt(r, k) for k in keys] + [str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(report: dict[str, Any]) -> str:
    """AFG (each genome) minus a control, per setting, attack and metric, with the paired
    interval."""
    lines = [
        "| setting | attack | metric | difference | value | 95 % paired interval | verdict "
        "| seeds it needs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report.get("comparisons", []):
        ci = f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else "–"
        pair = f"{c.get('first', 'afg')} - {c.get('versus', 'raw_pixels')}"
        needed = c.get("seeds_needed")
        lines.append(
            f"| {c['setting']} | {c['attack']} | {c['metric']} | {pair} | "
            f"{c['difference']:+.3f} | {ci} | {c['verdict']} | {needed or '–'} |"
        )
    return "\n".join(lines) + "\n"


def adaptive_table(report: dict[str, Any]) -> str:
    block = report.get("adaptive")
    if not block:
        return ""
    budgets = "; ".join(
        f"{b['norm']} eps {b['eps']:.3g}, {b['nb_iter']} steps of {b['eps_iter']:.3g} "
        f"({b['origin']})"
        for b in block["budgets"]
    )
    return (
        "\n**Adaptive attack.** Threat model: "
        f"{block['threat_model']}. Budgets: {budgets}. Tramer's check (ICML 2022): a "
        "detector evaded on a share e of sources at eps implies a classifier robust at eps/2 "
        "on 1 - e of them; a figure above what robust classifiers reach at eps/2 claims more "
        "than that argument allows.\n\n"
        + _table(["method", "attack", "mode"], ADAPTIVE_METRICS, block["rows"])
    )


def results_table(report: dict[str, Any]) -> str:
    protocol = report["protocol"]
    params = protocol["parameters"]
    note = (
        f"\nTest split of `{report['corpus']['name']}` ({report['corpus']['config_hash']}), "
        f"mean [95 % bootstrap interval over test source images and training seeds] ±std "
        f"over {protocol['seeds']} training seed(s). {protocol['threat_model'].capitalize()}. "
        f"Sources: {protocol['sources']}; adversarial records: "
        f"{protocol['adversarial_records']}. Parameters: AFG recognizer {params['afg']:,}, "
        f"raw-pixel control {params['raw_pixels']:,} (matched). TPR@5%FPR (test ROC) reads "
        "the threshold off the test set; the deployable figures are TPR / FPR at the "
        "threshold chosen on validation. *Seeds it needs*: the training seeds per method at "
        "which the seed spread alone leaves the difference's interval clear of zero "
        "(4 (s1^2 + s2^2) / difference^2); more seeds than were run: the claim is not yet "
        "carried.\n\n"
    )
    for genome in report.get("genomes", []):  # several corpora: each its own capacity
        note += (
            f"Parameters of `{genome['label']}`: AFG recognizer {genome['parameters']['afg']:,}, "
            f"its raw-pixel control {genome['parameters']['raw_pixels']:,}.\n"
        )
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    note += f"\nVersions: {versions}.\n\n" if versions else ""
    rows = [r | {"held_out": ",".join(r.get("held_out") or []) or "–"} for r in report["results"]]
    main = _table(["method", "setting", "held_out", "attack"], METRICS, rows)
    cautions = "".join(f"- **Warning**: {w}\n" for w in report.get("warnings", []))
    return main + note + cautions + comparison_table(report) + adaptive_table(report)


SMALL_TEST = 100  # test records of a row: fewer, and its interval is wider than most differences
MIN_SEEDS = 3  # training seeds a claim needs: the spread of one seed is not measured


def warnings(report: dict[str, Any]) -> list[str]:
    """What the figures cannot carry: AUROC below chance, rows on few test records, too few
    training seeds for the seed spread."""
    out = []
    for r in report["results"]:
        auroc = r.get("detection_auroc")
        if auroc is not None and auroc < 0.5:
            out.append(
                f"{r['method']} ({r['setting']}, {r['attack']}): AUROC {auroc:.3f} is below "
                "chance: the detector ranks these adversarial records as clean (a failed fit "
                "or an attack it inverts), not evidence about the genome"
            )
    small = sorted({r["n"] for r in report["results"] if r["n"] < SMALL_TEST})
    if small:
        out.append(
            f"rows on {small[0]} to {small[-1]} test records (fewer than {SMALL_TEST}): their "
            "intervals are wide; build a larger corpus before claiming a difference"
        )
    seeds = report["protocol"]["seeds"]
    if seeds < MIN_SEEDS:
        out.append(
            f"{seeds} training seed(s): training variance is not measured (the intervals cover "
            f"test sources only); a claim needs at least {MIN_SEEDS} (--seeds)"
        )
    thin = [
        c
        for c in report.get("comparisons", [])
        if c["verdict"] != "no difference shown" and (c.get("seeds_needed") or 0) > seeds
    ]
    if thin:
        worst = max(c["seeds_needed"] for c in thin)
        out.append(
            f"{len(thin)} difference(s) shown need more training seeds than the {seeds} run "
            f"(up to {worst}): their seed spread is as large as the difference; rerun with "
            f"--seeds {worst} before claiming them"
        )
    return out


def write_outputs(out: Path, report: dict, curves: dict, attacks: list[str]) -> None:
    """results.json and results.md (with their `warnings`); roc.png when there are curves."""
    report["warnings"] = warnings(report)
    report["verdict"] = verdict(report)
    owned_folder(out)
    write_json(out / BENCH_RESULTS, report)
    table = results_table(report).encode()
    atomic_write(out / BENCH_TABLE, lambda handle: handle.write(table))
    if curves:
        plot_roc(out / "roc.png", curves, attacks)


def plot_roc(path: Path, curves: dict, attacks: list[str]) -> None:
    """ROC per setting (rows) and attack (columns) on a log false-positive axis, AUROC in the
    legend, the 5 % FPR line and each method's validation-threshold operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in ("seen", "unseen") if any(k[0] == s for k in curves)]
    columns = [*attacks, "overall"]
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(4 * len(columns), 3.6 * len(rows)), squeeze=False
    )
    for axes_row, setting in zip(axes, rows, strict=True):
        for ax, attack in zip(axes_row, columns, strict=True):
            _roc_panel(ax, setting, attack, curves)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _roc_panel(ax, setting: str, attack: str, curves: dict) -> None:
    found = False
    for (curve_setting, method, curve_attack), (y, p, threshold) in sorted(curves.items()):
        if (curve_setting, curve_attack) != (setting, attack) or len(set(y)) < 2:
            continue
        found = True
        fpr, tpr, _ = roc_curve(y.astype(bool), p)
        (line,) = ax.plot(fpr, tpr, label=f"{method} (AUROC {roc_auc_score(y, p):.3f})")
        if threshold is not None:
            flagged = p > threshold
            op = (flagged[~y.astype(bool)].mean(), flagged[y.astype(bool)].mean())
            ax.plot(*op, marker="o", color=line.get_color(), markersize=5)
    ax.axvline(0.05, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"{attack} ({setting})",
        xlabel="false positive rate (log above 1 %)",
        ylabel="true positive rate",
    )
    if found:
        ax.legend(loc="lower right", fontsize=7, title="dot: validation threshold")
    else:
        ax.set_axis_off()
