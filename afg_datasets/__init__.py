"""Build, publish and consume Adversarial Feature Genome (AFG) corpora."""

__version__ = "0.1.0"

from afg_datasets.models import load_target_model  # noqa: E402

__all__ = ["__version__", "load_target_model"]
