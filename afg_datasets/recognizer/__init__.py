"""Recognizer: detect adversarial inputs and recover their original class from genomes."""

from afg_datasets.recognizer.model import OBJECTIVES, RecognizerNet
from afg_datasets.recognizer.recognizer import Recognizer
from afg_datasets.recognizer.training import TrainConfig, train

__all__ = ["OBJECTIVES", "Recognizer", "RecognizerNet", "TrainConfig", "train"]
