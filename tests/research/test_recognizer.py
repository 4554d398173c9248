"""Recognizer and `afg bench` on the small real corpus (figures come from the benchmark)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard

from afg_datasets.corpus.corpus import Corpus
from afg_datasets.evaluation.bench import run_bench
from afg_datasets.evaluation.methods import METHODS, Scores
from afg_datasets.evaluation.scoring import metrics
from afg_datasets.layout import SPLITS
from afg_datasets.publish.card import write_card
from afg_datasets.recognizer import Recognizer, RecognizerNet, TrainConfig
from afg_datasets.recognizer.data import read_split


@pytest.fixture(scope="module")
def report(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_bench(Corpus.of(corpus.out), out, quick=True), out


def test_bench_writes_every_method_and_setting(report, corpus):
    result, out = report
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "roc.png"}
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) >= {"corpus", "protocol", "versions", "results"}
    rows = {(r["method"], r["setting"], r["attack"]): r for r in saved["results"]}
    attacks = list(corpus.manifest["attacks"])
    for method in ("afg", "raw_pixels", "mahalanobis", "lid", "target_model"):
        for attack in attacks:
            assert (method, "seen", attack) in rows and (method, "unseen", attack) in rows
    for row in saved["results"]:
        assert set(row) >= {
            "method",
            "setting",
            "attack",
            "detection_auroc",
            "tpr_at_5fpr",
            "tpr_at_val_threshold",
            "fpr_at_val_threshold",
            "detection_acc",
            "recovery_acc",
            "clean_acc",
            "n",
            "seeds",
            "std",
        }
    assert rows[("mahalanobis", "seen", "pgd")]["recovery_acc"] is None
    assert rows[("target_model", "seen", "pgd")]["detection_auroc"] is None
    assert rows[("target_model", "seen", "pgd")]["recovery_acc"] == 0.0, "successful attacks only"
    assert rows[("target_model", "seen", "pgd")]["clean_acc"] == 1.0, "correct sources only"
    assert "non-adaptive" in saved["protocol"]["threat_model"]
    params = saved["protocol"]["parameters"]
    assert abs(params["raw_pixels"] / params["afg"] - 1) <= 0.2, "capacity-matched control"
    for method in ("afg", "raw_pixels", "mahalanobis", "lid"):
        row = rows[(method, "seen", "overall")]
        assert row["fpr_at_val_threshold"] is not None and row["tpr_at_val_threshold"] is not None


def test_card_includes_the_results_table(report, corpus, tmp_path):
    import shutil

    copy = tmp_path / "afg"
    shutil.copytree(corpus.out, copy)
    shutil.copytree(report[1], copy / "bench")
    write_card(Corpus(copy, corpus.manifest), corpus.stats)
    text = DatasetCard.load(copy / "README.md").text
    assert "| afg | seen |" in text
    assert "recovery on unseen attacks: AFG" in text and "raw-pixel control" in text


def test_metrics_from_sklearn_on_known_scores():
    test = {"is_adversarial": np.array([0, 0, 1, 1]), "label": np.array([1, 2, 3, 4])}
    perfect = Scores(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 2, 3, 0]))
    m = metrics(test, perfect, np.ones(4, bool))
    assert m["detection_auroc"] == 1.0 and m["tpr_at_5fpr"] == 1.0 and m["detection_acc"] == 1.0
    assert m["recovery_acc"] == 0.5 and m["clean_acc"] == 1.0 and m["end_to_end_acc"] == 0.75


def test_unit_weights_give_scikit_learn_metrics_with_ties():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

    from afg_datasets.evaluation.intervals import weighted_metrics

    rng = np.random.default_rng(0)
    is_adv = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.6 + 0.3 * is_adv, 1)  # coarse: many tied scores
    m = weighted_metrics(is_adv, np.zeros(300), p, None, np.ones((1, 300)))
    fpr, tpr, _ = roc_curve(is_adv, p)
    assert m["detection_auroc"][0] == pytest.approx(roc_auc_score(is_adv, p))
    assert m["tpr_at_5fpr"][0] == pytest.approx(np.interp(0.05, fpr, tpr))
    assert m["detection_acc"][0] == pytest.approx(balanced_accuracy_score(is_adv, p > 0.5))


def test_a_resample_takes_a_source_with_all_its_records():
    from afg_datasets.evaluation.intervals import source_weights

    ids = np.array(["a", "a", "a", "b", "b", "c"])  # clean + adversarial records per source
    w = source_weights(ids, draws=200, seed=0)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 3] == w[:, 4]).all()
    assert (w[:, [0, 3, 5]].sum(1) == 3).all(), "3 sources drawn per resample"


def test_an_interval_covers_training_seeds_as_well_as_test_sources():
    """Two seeds that disagree widely on the same test resamples: the seed-mean interval is
    as wide as their disagreement (an interval over test sources alone would be a point);
    one seed keeps its own draws; the seeds a claim needs grow with the seed spread."""
    from afg_datasets.evaluation.intervals import interval, over_seeds, seeds_needed

    draws = np.vstack([np.full(1000, 0.6), np.full(1000, 0.9)])  # [seeds, test resamples]
    low, high = interval(over_seeds(draws, seed=0))
    assert low == pytest.approx(0.6) and high == pytest.approx(0.9)
    assert np.array_equal(over_seeds(draws[:1], seed=0), draws[0])
    assert np.array_equal(over_seeds(draws, seed=3), over_seeds(draws, seed=3)), "seeded"
    assert seeds_needed(0.1, [0.05, 0.05]) == 2 and seeds_needed(0.1, [0.2, 0.2]) == 32
    assert seeds_needed(0.1, [None, 0.2]) is None and seeds_needed(0.0, [0.1, 0.1]) is None


def test_bench_rows_carry_intervals_and_paired_comparisons(report):
    result, _ = report
    row = next(r for r in result["results"] if (r["method"], r["setting"]) == ("afg", "seen"))
    low, high = row["ci"]["detection_auroc"]
    assert 0 <= low <= high <= 1 and high - low > 0, "a real interval, not a point"
    assert "bootstrap" in result["protocol"]["uncertainty"]
    comparisons = result["comparisons"]
    assert {c["metric"] for c in comparisons} >= {"detection_auroc", "recovery_acc"}
    assert all(c["seeds_needed"] is None for c in comparisons), "one seed: spread unmeasured"
    assert {c["versus"] for c in comparisons} == {"raw_pixels", "mahalanobis"}
    for c in comparisons:
        lo, hi = c["ci"]
        versus = c["versus"].replace("_", " ")
        expected = "afg better" if lo > 0 else f"{versus} better" if hi < 0 else None
        assert c["verdict"] == (expected or "no difference shown")
    first = json.loads((report[1] / "results.json").read_text())
    again = rerun(report)
    for saved in (first, again):
        saved.pop("seconds")
    assert again == first, "same arguments, same results.json (timings aside)"


def rerun(report):
    """results.json of a second identical run."""
    import tempfile

    result, out = report
    with tempfile.TemporaryDirectory() as tmp:
        run_bench(Corpus.of(result["corpus"]["path"]), Path(tmp) / "b", quick=True)
        return json.loads((Path(tmp) / "b" / "results.json").read_text())


def test_held_out_attacks_never_reach_train_or_validation(corpus, tmp_path, monkeypatch):
    from afg_datasets.attacks import ATTACKS
    from afg_datasets.evaluation import bench

    seen: list[tuple[set, set, set]] = []

    def spy(inputs, seed):
        attacks = {s: set(inputs.splits[s]["attack"]) - {"clean"} for s in SPLITS}
        seen.append((attacks["train"], attacks["validation"], attacks["test"]))
        return Scores(np.zeros(len(inputs.splits["test"]["key"])), None, 0.5)

    monkeypatch.setitem(bench.METHODS, "spy", spy)
    result = bench.run_bench(
        Corpus.of(corpus.out), tmp_path, quick=True, methods=["spy"], unseen="all"
    )
    attacks = set(corpus.manifest["attacks"])
    settings = [(r["setting"], tuple(r["held_out"])) for r in result["results"]]
    held = {h for s, h in settings if s != "seen"}
    families = {ATTACKS[a].family for a in attacks}
    assert {(a,) for a in attacks} <= held, "leave-one-attack-out for every attack"
    assert any(len(h) > 1 for h in held) or len(families) == len(attacks), "a family hold-out"
    assert len(seen) == 1 + len(held)
    assert seen[0][0] == attacks, "the seen setting trains on every attack"
    for (train, validation, test), held_out in zip(seen[1:], held_order(settings), strict=True):
        assert not (train | validation) & set(held_out), f"{held_out} leaked into training"
        assert test == attacks, "the test split keeps every attack; rows score the held-out"


def held_order(settings):
    out = []
    for setting, held_out in settings:
        if setting != "seen" and held_out not in out:
            out.append(held_out)
    return out


def test_validation_threshold_flags_at_most_five_percent_of_clean():
    from afg_datasets.evaluation.intervals import validation_threshold

    rng = np.random.default_rng(0)
    p = rng.random(1000)
    adv = np.r_[np.zeros(400, bool), np.ones(600, bool)]
    threshold = validation_threshold(p, adv)
    flagged = (p[~adv] > threshold).mean()
    assert 0.04 <= flagged <= 0.05


def test_mixed_readout_skips_the_fooled_prediction():
    net = RecognizerNet({"v": (3,)}, num_classes=4, objective="mixed")
    logits = torch.tensor(
        [
            [5.0, 4.0, -9, -9, 3.0],  # adversarial: top is the fooled pred 0
            [5.0, 4.0, -9, -9, -3.0],
        ]
    )  # clean: top class
    p_adv, original = net.readout(logits, torch.tensor([0, 0]))
    assert original.tolist() == [1, 0] and p_adv[0] > 0.5 > p_adv[1]


def test_recognizer_save_load_predict_on_new_images(corpus, tmp_path):
    recognizer = Recognizer.fit(corpus.out, train_cfg=TrainConfig(epochs=2, seed=0))
    recognizer.save(tmp_path / "rec")
    loaded = Recognizer.load(tmp_path / "rec")
    test = read_split(Corpus.open(corpus.out), "test")
    images = test["image"].transpose(0, 2, 3, 1)  # uint8 NHWC, as a user has them
    p_adv, classes = loaded.predict(images)
    assert p_adv.shape == classes.shape == (len(images),)
    assert ((p_adv >= 0) & (p_adv <= 1)).all()
    stored = {n: torch.from_numpy(test[n].astype(np.float32)) for n in loaded.info["inputs"]}
    expected, _ = loaded.net.readout(loaded.net(stored), torch.from_numpy(test["pred"]))
    assert np.allclose(p_adv, expected.detach().numpy(), atol=1e-4), "genomes recomputed exactly"
    assert set(METHODS) >= {"afg", "raw_pixels", "mahalanobis", "lid", "target_model"}


FROM_HUB = """
import sys, numpy as np
from afg_datasets.recognizer import Recognizer
images = np.load(sys.argv[2])
p_adv, classes = Recognizer.from_pretrained(sys.argv[1]).predict(images)
np.save(sys.argv[3], np.stack([p_adv, classes.astype(np.float32)]))
"""


def test_recognizer_round_trips_through_a_loopback_hub(corpus, tmp_path):
    """fit-recognizer -> push-recognizer (real huggingface_hub client) -> from_pretrained of
    the repo id (real snapshot_download, in a fresh process) -> the same predictions."""
    import os
    import subprocess
    import sys

    from huggingface_hub import ModelCard

    from tests.fake_hub import FakeHub
    from tests.samples import TOKEN, run_cli

    saved = tmp_path / "rec"
    fitted = run_cli("fit-recognizer", str(corpus.out), "--out", str(saved), "--epochs", "2")
    assert fitted.returncode == 0, fitted.stderr
    card = ModelCard.load(saved / "README.md")
    assert corpus.manifest["config_hash"] in card.text and "Threat model" in card.text
    assert card.data.library_name == "afg-datasets"
    images = read_split(Corpus.open(corpus.out), "test")["image"][:16].transpose(0, 2, 3, 1)
    np.save(tmp_path / "images.npy", images)
    with FakeHub() as hub:
        env = hub.env(TOKEN, tmp_path / "hf")
        pushed = run_cli("push-recognizer", str(saved), "--repo-id", "afg-org/rec", env=env)
        assert pushed.returncode == 0, pushed.stderr
        assert hub.repos["afg-org/rec"]["type"] == "model"
        script = [sys.executable, "-c", FROM_HUB, "afg-org/rec", str(tmp_path / "images.npy")]
        loaded = subprocess.run(
            [*script, str(tmp_path / "hub.npy")],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=300,
        )
        assert loaded.returncode == 0, loaded.stderr
    p_adv, classes = Recognizer.from_pretrained(saved).predict(images)
    assert np.array_equal(
        np.load(tmp_path / "hub.npy"), np.stack([p_adv, classes.astype(np.float32)])
    )
    assert TOKEN not in pushed.stdout + pushed.stderr


def test_predict_takes_images_as_load_dataset_gives_them():
    from afg_datasets.errors import ModelError
    from afg_datasets.recognizer.recognizer import model_batch

    grey = np.full((2, 8, 8), 255, np.uint8)  # [N, H, W], as a grey Image column gives them
    assert model_batch(grey).shape == (2, 1, 8, 8) and float(model_batch(grey).max()) == 1.0
    assert model_batch(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 3, 8, 8)
    assert model_batch(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    with pytest.raises(ModelError, match=r"shape \(8, 8\)"):
        model_batch(np.zeros((8, 8), np.uint8))


def test_the_report_warns_where_its_figures_cannot_carry_a_claim():
    from afg_datasets.evaluation.report import warnings

    row = {"method": "afg", "setting": "family", "attack": "fgsm", "detection_auroc": 0.41}
    found = warnings({"results": [row | {"n": 40}], "protocol": {"seeds": 1}})
    assert len(found) == 3 and "below chance" in found[0] and "40 to 40 test records" in found[1]
    assert (
        warnings({"results": [row | {"detection_auroc": 0.9, "n": 500}], "protocol": {"seeds": 3}})
        == []
    )
    shown = {"verdict": "afg better", "seeds_needed": 12}
    thin = warnings(
        {
            "results": [row | {"detection_auroc": 0.9, "n": 500}],
            "protocol": {"seeds": 3},
            "comparisons": [
                shown,
                shown | {"seeds_needed": 3},
                shown | {"verdict": "no difference shown"},
            ],
        }
    )
    assert len(thin) == 1 and "1 difference(s) shown need more training seeds" in thin[0]
    assert "--seeds 12" in thin[0]


def test_a_comparison_knows_which_way_each_metric_is_better():
    """A lower false-positive rate is the better one; a float-zero difference needs no seed
    count; the several-genome bench's labels get their verdict sentence too."""
    from afg_datasets.evaluation.intervals import METRICS, seeds_needed
    from afg_datasets.evaluation.scoring import compare
    from afg_datasets.evaluation.verdict import verdict

    draws = {"afg": 0.04 + np.zeros(200), "raw_pixels": 0.135 + np.zeros(200)}
    draws["afg"][:100] += 0.001  # a spread, so the interval is an interval
    boots = {m: {"fpr_at_val_threshold": d} for m, d in draws.items()}
    rows = {
        m: {"fpr_at_val_threshold": float(d.mean()), "std": {"fpr_at_val_threshold": 0.01}}
        for m, d in draws.items()
    }
    for key in METRICS:  # compare reads every metric; only the FPR is measured here
        for m in rows:
            rows[m].setdefault(key, None)
    (found,) = compare(boots, rows)
    assert found["difference"] < 0 and found["verdict"] == "afg better"
    assert seeds_needed(1e-17, [0.1, 0.1]) is None and seeds_needed(0.1, [0.05, 0.05]) == 2
    labelled = [
        {
            "setting": "seen",
            "metric": "recovery_acc",
            "attack": "fgsm",
            "first": "afg:gm",
            "versus": "raw_pixels:gm",
            "verdict": "afg:gm better",
        },
    ]
    sentence = verdict({"comparisons": labelled})
    assert "AFG (gm) beats the raw-pixel control on 1 of 1 attacks" in sentence
