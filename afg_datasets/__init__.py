"""Build, publish and consume Adversarial Feature Genome (AFG) corpora.

The public functions load lazily, so `afg --help`, `afg verify` and `afg push` do not start
torch.
"""

from importlib import import_module

__version__ = "0.12.0"

_PUBLIC = {
    "load": "afg_datasets.corpus.loader",
    "dataloader": "afg_datasets.corpus.loader",
    "stream": "afg_datasets.corpus.loader",
    "load_target_model": "afg_datasets.models",
    "verify_corpus": "afg_datasets.corpus.corpus",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'afg_datasets' has no attribute {name!r}")
