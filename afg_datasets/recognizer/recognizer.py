"""`Recognizer`: train on a corpus, save as safetensors + JSON, load, predict on new images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from afg_datasets.genome import encoder_from_manifest, genome_inputs
from afg_datasets.layout import MODEL_DIR
from afg_datasets.models import forward_with_taps, load_model_dir
from afg_datasets.recognizer.data import read_split, to_tensors
from afg_datasets.recognizer.model import RecognizerNet
from afg_datasets.recognizer.training import TrainConfig, fit_recognizer
from afg_datasets.verify import require_intact

WEIGHTS = "recognizer.safetensors"
CONFIG = "recognizer.json"


def recognizer_inputs(manifest: dict) -> list[str]:
    return genome_inputs(manifest["features"]["columns"])


class Recognizer:
    """A trained RecognizerNet plus what it needs to compute genomes of new images."""

    def __init__(self, net: RecognizerNet, manifest: dict, target_dir: Path, info: dict):
        self.net = net.eval()
        self.manifest = manifest
        self.target_dir = Path(target_dir)
        self.info = info
        self._target = None

    @classmethod
    def fit(
        cls,
        corpus_dir: str | Path,
        objective: str = "two_head",
        train_cfg: TrainConfig | None = None,
    ) -> Recognizer:
        """Train on the corpus's train split, early-stopped on its validation split."""
        root = Path(corpus_dir)
        manifest = require_intact(root)
        inputs = recognizer_inputs(manifest)
        train_data = to_tensors(read_split(root, "train", images=False), inputs)
        val_data = to_tensors(read_split(root, "validation", images=False), inputs)
        cfg = train_cfg or TrainConfig()
        num_classes = len(manifest["source"]["class_names"])
        net, history = fit_recognizer(inputs, train_data, val_data, num_classes, objective, cfg)
        info = {
            "objective": objective,
            "inputs": inputs,
            "seed": cfg.seed,
            **history,
            "corpus": {"name": manifest["name"], "config_hash": manifest["config_hash"]},
        }
        return cls(net, manifest, root / MODEL_DIR, info)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path / WEIGHTS))
        shapes = {n: list(s) for n, s in self.net.shapes.items()}
        config = {
            **self.info,
            "shapes": shapes,
            "num_classes": self.net.num_classes,
            "manifest": {
                k: self.manifest[k]
                for k in (
                    "name",
                    "config",
                    "config_hash",
                    "seeds",
                    "layers",
                    "model",
                    "source",
                    "features",
                )
            },
        }
        (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if self.target_dir.resolve() != (path / "target_model").resolve():
            shutil.copytree(self.target_dir, path / "target_model", dirs_exist_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recognizer:
        """Weights through safetensors, config through JSON: no pickle."""
        path = Path(path)
        config = json.loads((path / CONFIG).read_text())
        net = RecognizerNet(
            {n: tuple(s) for n, s in config["shapes"].items()},
            config["num_classes"],
            config["objective"],
        )
        net.load_state_dict(load_file(str(path / WEIGHTS)))
        return cls(net, config["manifest"], path / "target_model", config)

    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability adversarial, original class) for images: uint8 [N,H,W,C] or [0,1]
        float [N,C,H,W]. Genomes come from the corpus's own target model and encoder."""
        x = torch.as_tensor(images)
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float() / 255
        if self._target is None:
            self._target = load_model_dir(self.target_dir)[0]
        encoder = encoder_from_manifest(self.manifest, self._target)
        preds, acts = forward_with_taps(self._target, encoder.layers, x)
        genome = {
            k: torch.from_numpy(v.astype(np.float32)) for k, v in encoder.encode(acts).items()
        }
        p_adv, original = self.net.readout(self.net(genome), preds)
        return p_adv.numpy(), original.numpy()
