"""Model registry: torchvision checkpoints, head mismatch, user models, layer validation."""

import sys

import pytest
import torch
from datasets import load_dataset
from torchvision.models import get_model

from afg_datasets.building import build_corpus
from afg_datasets.config import BuildConfig
from afg_datasets.errors import ConfigError, ModelError
from afg_datasets.models import ARCHITECTURES, load_target_model
from tests.samples import save_resnet18, write_folder


def test_registry_has_torchvision_classifiers():
    assert {"resnet18", "resnet50", "vgg16", "mobilenet_v3_small"} <= set(ARCHITECTURES)


def folder_config(root, **model):
    return BuildConfig.from_dict(
        {
            "source": {
                "name": "imagefolder",
                "root": str(root),
                "image_size": 32,
                "on_bad_image": "skip",
            },
            "model": {"architecture": "resnet18", **model},
            "attacks": {"fgsm": {"eps": 0.0156863}},
        }
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("imagefolder") / "folder")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_imagefolder_resnet18_checkpoint_end_to_end(folder, tmp_path, suffix):
    checkpoint = save_resnet18(tmp_path / f"r18{suffix}", num_classes=3)
    result = build_corpus(
        folder_config(folder, checkpoint=str(checkpoint)), tmp_path / "afg", progress=False
    )
    assert result.manifest["source"]["skipped"] == 1
    assert [layer["name"] for layer in result.manifest["layers"]] == [
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert result.manifest["model"]["weights"] == "checkpoint"
    dataset = load_dataset(str(tmp_path / "afg"))
    assert dataset["train"].features["label"].names == ["cat", "dog", "owl"]
    reloaded = load_target_model(tmp_path / "afg")
    original = get_model("resnet18", num_classes=3)
    original.load_state_dict(torch.load(save_resnet18(tmp_path / "again.pt", 3), weights_only=True))
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(reloaded(x), original.eval()((x - mean) / std), atol=1e-5)


def test_checkpoint_head_mismatch_is_named(folder, tmp_path):
    checkpoint = save_resnet18(tmp_path / "r18.pt", num_classes=5)
    with pytest.raises(ModelError, match="3 outputs"):
        build_corpus(
            folder_config(folder, checkpoint=str(checkpoint)), tmp_path / "afg", progress=False
        )
    assert not (tmp_path / "afg").exists()


def test_pickled_module_checkpoint_is_refused(folder, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(get_model("resnet18", num_classes=3), path)
    with pytest.raises(ModelError, match="weights-only"):
        build_corpus(folder_config(folder, checkpoint=str(path)), tmp_path / "afg", progress=False)


def test_unknown_layer_lists_available(folder, tmp_path):
    checkpoint = save_resnet18(tmp_path / "r18.pt", num_classes=3)
    with pytest.raises(ConfigError, match="layer9.*layer1"):
        build_corpus(
            folder_config(folder, checkpoint=str(checkpoint), layers=["layer9"]),
            tmp_path / "afg",
            progress=False,
        )
    assert not (tmp_path / "afg").exists()


def test_user_model_module_callable(folder, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(2), nn.Flatten(),\n"
        "                         nn.Linear(16, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = folder_config(folder, architecture="my_models:tiny", layers=["1"])
    result = build_corpus(cfg, tmp_path / "afg", progress=False)
    assert result.manifest["model"]["weights"] == "user"
    with pytest.raises(ModelError, match="nothing a corpus names is imported"):
        load_target_model(tmp_path / "afg")  # the corpus alone never names code to import
    model = load_target_model(tmp_path / "afg", architecture="my_models:tiny")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    sys.modules.pop("my_models", None)


def test_unimportable_user_model(folder, tmp_path):
    with pytest.raises(ModelError, match="no_such_module"):
        build_corpus(
            folder_config(folder, architecture="no_such_module:f"), tmp_path / "afg", progress=False
        )
