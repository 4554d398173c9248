"""`afg afs`: adversarial feature separability curves, their figure and the card's sentence."""

import json
import shutil

from typer.testing import CliRunner

from afg_datasets.cli import app
from afg_datasets.evaluation.afs import _depth_correlation, _summary

runner = CliRunner()


def test_afs_writes_curves_figure_and_card_sentence(corpus, tmp_path):
    copy = tmp_path / "afg"
    shutil.copytree(corpus.out, copy)
    result = runner.invoke(app, ["afs", str(copy)])
    assert result.exit_code == 0, result.output
    report = json.loads((copy / "afs.json").read_text())
    assert set(report["curves"]) == {"raw", "genome"}
    for kind in ("raw", "genome"):
        assert set(report["curves"][kind]) == {"fgsm", "pgd", "cw_l2"}
        for curve in report["curves"][kind].values():
            assert len(curve) == 3 and all(p["q25"] <= p["median"] <= p["q75"] for p in curve)
    assert (copy / "afs.png").stat().st_size > 10_000
    card = (copy / "README.md").read_text()
    assert "afs.png" in card and report["summary"] in card
    assert runner.invoke(app, ["verify", str(copy)]).exit_code == 0


def test_the_summary_says_what_its_figures_show():
    """A curve that ends higher but not steadily (fgsm 1.06 -> 1.40 -> 1.27) is not "does not
    grow"; one that falls is not counted as growing."""
    curve = lambda *m: [{"median": v, "q25": v, "q75": v} for v in m]  # noqa: E731
    curves = {"fgsm": curve(1.06, 1.40, 1.27), "pgd": curve(0.9, 0.8, 0.7)}
    report = {"curves": {"raw": curves, "genome": curves}, "split": "test", "records": 9}
    report["depth_correlation"] = _depth_correlation(report["curves"])
    summary = _summary(report)
    assert "larger at the last layer than at the first for 1 of 2 attacks" in summary
    assert "(0 of them rising steadily with depth)" in summary
    assert "fgsm 1.06 -> 1.27" in summary
