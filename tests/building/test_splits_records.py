import numpy as np

from afg_datasets.building.splits import assign_splits, split_of
from afg_datasets.images import decode_png, encode_png
from afg_datasets.records import mixed_labels, record_key

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_split_depends_only_on_seed_and_source_id():
    ids = [f"s-{i}" for i in range(2000)]
    splits = assign_splits(ids, 0, RATIOS)
    assert splits[123] == split_of("s-123", 0, RATIOS)
    assert list(assign_splits(ids[:50], 0, RATIOS)) == list(splits[:50])
    assert list(assign_splits(ids, 1, RATIOS)) != list(splits)
    fractions = {s: float(np.mean(splits == s)) for s in RATIOS}
    assert abs(fractions["train"] - 0.8) < 0.03 and abs(fractions["test"] - 0.1) < 0.03


def test_mixed_label_marks_original_predicted_and_adversarial_flag():
    labels, preds = np.array([3, 5]), np.array([3, 7])
    clean = mixed_labels(labels, preds, False, 10)
    adv = mixed_labels(labels, preds, True, 10)
    assert clean[0].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert adv[1].nonzero()[0].tolist() == [5, 7, 10]


def test_keys_are_lowercase_without_dots():
    assert record_key("Digits-00001", "PGD") == "digits-00001-pgd"
    try:
        record_key("a.b", "clean")
    except ValueError:
        pass
    else:
        raise AssertionError("dots must be refused")


def test_png_round_trip_is_lossless():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 1), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(image)), image)
