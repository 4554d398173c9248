"""Target-model weights on disk: checkpoints (weights-only), saved model dirs, the cache."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from afg_datasets.errors import ModelError, first_line
from afg_datasets.files import atomic_write
from afg_datasets.layout import (
    INFO_FILE,
    MODEL_DIR,
    MODEL_FILE,
    read_json,
    write_json,
)
from afg_datasets.models.nets import is_user_model
from afg_datasets.models.target import ModelInfo, TargetModel, build_model, freeze
from afg_datasets.resources import cache_root


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or torch.save (loaded with weights_only=True, no pickle)."""
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling refusal or parse error is a bad file
        raise ModelError(
            f"checkpoint {str(path)!r} is not a readable weights-only state dict: {err}"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a state dict")
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise ModelError(f"checkpoint {str(path)!r}: entries {odd[:5]} are not tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise ModelError(f"checkpoint {str(path)!r}: NaN or infinite values in {bad[:5]}")
    return state


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], num_classes: int, origin: str):
    """Load a state dict; a head that does not match the source's classes is named as such."""
    expected = net.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if mismatched:
        raise ModelError(
            f"{origin} does not match a model with {num_classes} outputs (the source's classes): "
            + "; ".join(mismatched)
        )
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ModelError(
            f"{origin} does not fit the architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    net.load_state_dict(state)


def save_model(model: TargetModel, info: ModelInfo, directory: Path) -> Path:
    """Write model.safetensors and model.json (both atomically); returns the weights path."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / MODEL_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda handle: handle.write(save(state, metadata={"format": "pt"})))
    write_json(directory / INFO_FILE, asdict(info), sort_keys=True)
    return weights


def load_model_dir(
    directory: Path, device: str = "cpu", trusted: str | None = None
) -> tuple[TargetModel, ModelInfo]:
    """Rebuild a saved target model (safetensors, no pickle), frozen and in eval mode.

    A saved model.json is data: its architecture must be a registered name. A `module:callable`
    there is imported only when the caller's own code names the same one (`trusted`)."""
    raw = read_json(directory / INFO_FILE, shape="model_info")
    known = {f.name for f in fields(ModelInfo)}  # older caches may carry extra keys
    info = ModelInfo(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    )
    spec = info.architecture
    if is_user_model(spec) and spec != trusted:
        raise ModelError(
            f"{directory / INFO_FILE} names the architecture {spec!r}, a Python import path; "
            "nothing a corpus names is imported. If you trust that code, load it explicitly: "
            f"load_target_model(DIR, architecture={spec!r})"
        )
    model = build_model(info)
    weights = directory / MODEL_FILE
    try:
        model.load_state_dict(load_file(str(weights)))
    except (SafetensorError, RuntimeError, OSError, ValueError) as err:
        first = first_line(err)
        raise ModelError(f"{weights}: not the weights of {spec!r} ({first})") from None
    return freeze(model.to(device)), info


def load_target_model(
    corpus_dir: str | os.PathLike, device: str = "cpu", architecture: str | None = None
) -> TargetModel:
    """The target model a corpus was built with, in eval mode. `architecture`: a
    `module:callable` you trust, for corpora built with a custom model (never taken from the
    corpus itself)."""
    return load_model_dir(Path(corpus_dir) / MODEL_DIR, device, trusted=architecture)[0]


def cached_model_dir(cache_key: str) -> Path:
    """The folder a trained target model with this cache key is saved in."""
    return cache_root() / "models" / cache_key
