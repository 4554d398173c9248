import pytest
import torch

from afg_datasets.errors import ConfigError
from afg_datasets.models import load_target_model, tap


def test_tap_records_layers_and_removes_hooks(tiny_model):
    x = torch.rand(2, 1, 8, 8)
    with tap(tiny_model, ["block1", "block3"]) as acts:
        tiny_model(x)
        assert acts["block1"].shape == (2, 4, 4, 4)
        assert acts["block3"].shape == (2, 16, 1, 1)
    assert all(not m._forward_hooks for m in tiny_model.modules())


def test_unknown_layer_lists_available(tiny_model):
    with pytest.raises(ConfigError, match="block2"), tap(tiny_model, ["layer9"]):
        pass


def test_model_takes_unit_pixels_normalization_inside(tiny_model):
    x = torch.rand(2, 1, 8, 8)
    expected = tiny_model.net((x - 0.5) / 0.25)
    assert torch.allclose(tiny_model(x), expected)


def test_load_target_model_from_corpus(corpus):
    model = load_target_model(corpus.out)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert corpus.manifest["model"]["test_accuracy"] >= 0.95
