"""Build, publish and consume Adversarial Feature Genome (AFG) corpora."""

__version__ = "0.2.0"

from afg_datasets.loader import load, stream  # noqa: E402
from afg_datasets.models import load_target_model  # noqa: E402
from afg_datasets.verify import verify_corpus  # noqa: E402

__all__ = ["__version__", "load", "load_target_model", "stream", "verify_corpus"]
