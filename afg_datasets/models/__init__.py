"""Target models: nets and their registry, the [0,1]-pixel wrapper with taps, training or
loading (`obtain_target_model`), and weights on disk."""

from afg_datasets.models.nets import (
    ARCHITECTURES,
    SmallCNN,
    SmallResNet,
    check_architecture,
    is_user_model,
)
from afg_datasets.models.storage import load_model_dir, load_target_model, save_model
from afg_datasets.models.target import (
    ModelInfo,
    TargetModel,
    forward_until,
    forward_with_taps,
    freeze,
    model_input,
    scaled,
    tap,
    to_device,
)
from afg_datasets.models.training import (
    SourceData,
    TrainSettings,
    obtain_target_model,
    read_checkpoint,
)

__all__ = [
    "ARCHITECTURES",
    "ModelInfo",
    "SmallCNN",
    "SmallResNet",
    "SourceData",
    "TargetModel",
    "TrainSettings",
    "check_architecture",
    "is_user_model",
    "forward_until",
    "forward_with_taps",
    "freeze",
    "load_model_dir",
    "load_target_model",
    "model_input",
    "obtain_target_model",
    "read_checkpoint",
    "save_model",
    "scaled",
    "tap",
    "to_device",
]
