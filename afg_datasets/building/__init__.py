"""Building a corpus: context (prepared once per process) -> task (one resumable unit) -> executors
(where tasks run) -> finalize (manifest, stats, card); `build_corpus` ties them together."""

from afg_datasets.building.corpus import build_corpus
from afg_datasets.building.finalize import BuildResult, finalize
from afg_datasets.building.options import RunOptions

__all__ = ["BuildResult", "RunOptions", "build_corpus", "finalize"]
