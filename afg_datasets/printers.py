"""What the CLI prints: one function per result, rich tables, nothing computed here."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from afg_datasets.layout import shown_name

console = Console(stderr=True, soft_wrap=True)


def build_summary(result) -> None:
    stats, manifest = result.stats, result.manifest
    out = Console()
    out.print(f"[bold]AFG corpus[/] {result.out}  (config hash {manifest['config_hash']})")
    out.print(
        f"records {stats['records']} in {stats['wall_seconds']:.1f}s "
        f"({stats['records_per_s']:.1f}/s), peak RSS {stats['peak_rss_mb']:.0f} MB"
    )
    model = stats["target_model"]
    origin = f"trained in {model['train_seconds']:.1f}s"
    if model["cached"]:
        origin = "cached"
    elif model["weights"] != "trained":
        origin = f"weights: {model['weights']}"
    out.print(f"target model test accuracy {model['test_accuracy']:.4f} ({origin})")
    table = Table("attack", "success rate", "mean linf", "mean l2", "records")
    for name, s in stats["attacks"].items():
        table.add_row(
            name,
            f"{s['success_rate']:.3f}",
            f"{s['mean_linf']:.4f}",
            f"{s['mean_l2']:.4f}",
            str(s["records"]),
        )
    out.print(table)
    stages = Table("stage", "wall s", "process s", "records/s")
    for name, s in stats["stages"].items():
        # before 0.11 a stage had only `seconds`, summed over processes
        wall, process = s.get("wall_seconds"), s.get("process_seconds", s.get("seconds"))
        rate = s.get("records_per_s")
        stages.add_row(
            name,
            "-" if wall is None else f"{wall:.2f}",
            "-" if process is None else f"{process:.2f}",
            "-" if rate is None else f"{rate:,.1f}",
        )
    out.print(stages)
    splits = ", ".join(f"{k} {v['records']}" for k, v in manifest["splits"].items())
    out.print(f"splits: {splits}")
    out.print(f'load it: datasets.load_dataset("{result.out}")')


def report(results: dict[str, Any], as_json: bool, table) -> None:
    """A benchmark's results: one JSON object (`--json`), else its table."""
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        table(results)


def upload(plan, repo_id: str, dry_run: bool) -> None:
    """A push's plan (`hub.PushPlan`): what went (or would go), was deleted, was kept."""
    total = sum(f.bytes for f in plan.upload)
    if dry_run:
        for item in plan.upload:
            print(f"{item.bytes:>12,d}  {item.path}")
    for path in plan.delete or []:
        print(f"{'deleted' if not dry_run else 'would delete':>12}  {path}  (not in this corpus)")
    for path in plan.kept or []:
        print(f"{'kept':>12}  {path}  (not the corpus's: left as it is)")
    if plan.odd:  # a listing's names are data: escaped, and never deleted
        names = ", ".join(shown_name(path) for path in plan.odd)
        print(f"{'kept':>12}  {len(plan.odd)} name(s) no corpus file has, left alone: {names}")
    if plan.delete is None and dry_run:
        print(
            f"{repo_id} not listed ({plan.unlisted}), so what the push would delete is not "
            "known; with HF_HUB_OFFLINE=1 a dry run lists its uploads without asking the Hub"
        )
    if not dry_run:
        print(f"pushed {len(plan.upload)} files ({total / 1e6:.1f} MB) to {repo_id}")
        return
    print(f"dry run: {len(plan.upload)} files, {total / 1e6:.1f} MB would go to {repo_id}")


def loader_bench(results: dict[str, Any]) -> None:
    table = Table("reader", "records/s", "MB/s", "seconds", "of datasets numpy (same columns)")
    for name, r in results["readers"].items():
        table.add_row(
            name,
            f"{r['records_per_s']:,.0f}",
            f"{r['mb_per_s']:,.1f}",
            f"{r['seconds']:.3f}",
            f"{r['fraction_of_anchor']:.2f}",
        )
    out = Console()
    out.print(table)
    out.print(f"batched stream / dataloader: {results['stream_batched_over_dataloader']:.2f}")
    out.print(f"condition: {results['condition']}, torch threads {results['torch_threads']}")


def build_bench(results: dict[str, Any]) -> None:
    out = Console()
    if "kill" in results:
        k = results["kill"]
        out.print(
            f"kill/resume: {k['identical']}/{k['points']} resumed builds identical to the "
            f"reference ({k['killed_mid_build']} killed mid-build, {k['tasks']} tasks)"
        )
    if "scaling" in results:
        s = results["scaling"]
        out.print(
            f"weak scaling: 1 worker {s['single_worker_records_per_s']} records/s; 2 workers "
            f"{s['two_workers_records_per_s_each']} each = {s['fraction_of_single']} of single"
        )
    if "memory" in results:
        m = results["memory"]
        out.print(
            f"peak RSS: {m['x1']['records']} records {m['x1']['peak_rss_mb']} MB, "
            f"{m['x4']['records']} records {m['x4']['peak_rss_mb']} MB (ratio {m['ratio']})"
        )
    if "source" in results:
        s = results["source"]
        sizes = [v for k, v in s.items() if k.startswith("n")]
        for v in sizes:
            out.print(
                f"source of {v['images']} images, --limit {s['limit']}: peak RSS "
                f"{v['peak_rss_mb']} MB, listing {v['listing_seconds']} s, first task "
                f"{v['first_task_after_launch_s']} s after launch"
            )
        out.print(f"peak RSS ratio (10N / N): {s['rss_ratio']}")
        out.print(f"decode images/s at 224 px: {s['decode_images_per_s']}")
    if "device" in results:
        device_bench(results["device"], out)


def _of_floor(fractions: dict[str, float], stage: str) -> str:
    return f" ({fractions[stage]:.3f})" if stage in fractions else ""


def device_bench(d: dict[str, Any], out: Console) -> None:
    """The device check's short table: source images/s per stage and of the floor."""
    out.print(f"{d['device_name']}, {d['model']} {d['image_size']} px, batch {d['batch_size']}")
    names = [f"{v['precision']}{' NHWC' if v['channels_last'] else ''}" for v in d["variants"]]
    table = Table("source images/s (of floor)", *names)
    table.add_row(
        "floor (spread)",
        *(f"{v['floor_images_per_s']} ({v['floor_spread']:.1%})" for v in d["variants"]),
    )
    for stage in d["variants"][0]["source_images_per_s"]:
        table.add_row(
            stage,
            *(
                f"{v['source_images_per_s'][stage]}{_of_floor(v['floor_fraction'], stage)}"
                for v in d["variants"]
            ),
        )
    table.add_row("end to end", *(str(v["end_to_end_images_per_s"]) for v in d["variants"]))
    for attack in d["variants"][0]["attacks"]:
        table.add_row(
            f"{attack} success",
            *(f"{v['attacks'][attack]['success_rate']:.3f}" for v in d["variants"]),
        )
    table.add_row("peak MB", *(str(v["peak_device_mb"] or v["peak_rss_mb"]) for v in d["variants"]))
    out.print(table)
    out.print(f"bf16 - fp32 per attack: {d['bf16_price']}")
    out.print(f"decode wait: {d['decode_overlap']}")
    g, a = d["groupviz"], d["atlas"]
    out.print(
        f"groupviz {g['steps']} steps {g['image_size']} px: {g['records_per_s']} records/s, "
        f"{g['pictures_per_s']} pictures/s ({g['floor_fraction']} of the floor); ImageNet-val's "
        f"{g['imagenet_val']['records']} records on {g['imagenet_val']['devices']} devices: "
        f"{g['imagenet_val']['wall_seconds'] / 3600:.1f} h"
    )
    out.print(
        f"atlas {a['pictures']} pictures x {a['steps']} steps {a['image_size']} px: "
        f"{a['seconds']} s once, {a['pictures_per_s']} pictures/s ({a['floor_fraction']} of "
        f"the floor in passes), {a['share_of_projected_build']:.2%} of the fp32 projection"
    )
    out.print(f"largest batch: {d['largest_batch']}")
    for precision, p in d["imagenet_val_projection"].items():
        out.print(
            f"ImageNet-val ({p['sources']} images) on {p['devices']} such devices, {precision}: "
            f"{p['wall_seconds'] / 3600:.2f} h, {p['bytes'] / 1e9:.1f} GB"
        )


def estimate(report: dict[str, Any]) -> None:
    table = Table("stage", "s / source image", "share", "of fwd+bwd floor")
    for s in report["stages"]:
        fraction = s.get("floor_fraction")
        table.add_row(
            s["stage"],
            f"{s['seconds_per_source']:.5f}",
            f"{s['share']:.1%}",
            f"{fraction:.3f}" if fraction is not None else "-",
        )
    out = Console()
    out.print(table)
    hours = report["wall_seconds"] / 3600
    out.print(
        f"projected: {report['sources']} source images on {report['devices']} x "
        f"{report['device_name']} ({report['precision']}): {report['wall_seconds']:.0f} s "
        f"({hours:.2f} h), {report['records']} records, {report['bytes'] / 1e9:.2f} GB"
    )
    for fmt, groups in report["bytes_per_record"].items():
        if isinstance(groups, dict):
            shown = ", ".join(f"{k} {v:,.0f}" for k, v in groups.items())
            out.print(f"bytes per record, {fmt}: {shown}")
    out.print(
        f"setup {report['setup_seconds']} s, training {report['train_model_seconds']} s; "
        f"floor {report['floor_images_per_s']} images/s (spread {report['floor_spread']:.1%}); "
        "calibrated on "
        f"{report['calibration_sources']} {report['calibration_source']} source images"
    )


def encoder_bench(results: dict[str, Any]) -> None:
    table = Table("measure", "value")
    for section in ("nmf", "groupviz", "atlas"):
        for key, value in results.get(section, {}).items():
            table.add_row(f"{section}.{key}", str(value))
    Console().print(table)
    if results.get("render_curve"):
        curve = Table(*results["render_curve"][0])
        for row in results["render_curve"]:
            curve.add_row(*(str(value) for value in row.values()))
        Console().print(curve)


def afs(report: dict[str, Any]) -> None:
    table = Table("representation", "attack", *report["layers"], "depth rho")
    for kind, curves in report["curves"].items():
        for attack, curve in curves.items():
            rho = report["depth_correlation"][kind][attack]
            table.add_row(kind, attack, *(f"{p['median']:.3f}" for p in curve), f"{rho:.2f}")
    Console().print(table)
    print(report["summary"])
