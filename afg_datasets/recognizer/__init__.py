"""Recognizer: detect adversarial inputs and recover their original class from genomes.

Its names load lazily, so `afg_datasets.recognizer.data` (a corpus split as arrays) loads no
training, source, attack or building module."""

from importlib import import_module

_PUBLIC = {
    "OBJECTIVES": "afg_datasets.recognizer.model",
    "RecognizerNet": "afg_datasets.recognizer.model",
    "Recognizer": "afg_datasets.recognizer.recognizer",
    "TrainConfig": "afg_datasets.recognizer.training",
    "train": "afg_datasets.recognizer.training",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'afg_datasets.recognizer' has no attribute {name!r}")
