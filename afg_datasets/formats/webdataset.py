"""WebDataset: `wds/<split>/<split>-TTTTT-of-NNNNN.tar`, every attack's records of a split and
task in one tar, sample by sample: `<key>.png`, `<key>.json` (the scalar fields), one
`<key>.<genome column>.npy` per genome array (`.png` for pictures). Fixed owner, mode and
mtime make the tars byte-reproducible; nothing in them is pickle."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
from datasets import Image

from afg_datasets.errors import CorpusError, first_line
from afg_datasets.formats.base import OutputFormat, ShardWriter
from afg_datasets.images import encode_png
from afg_datasets.records import RecordBatch, mixed_labels, npy_bytes

TAR_OWNER = "afg"
TAR_MTIME = 0
# What a shard may hold: nothing a decoder would unpickle.
TAR_SUFFIXES = (".png", ".json", ".npy")


def to_samples(batch: RecordBatch, features) -> list[dict[str, bytes | str]]:
    """Webdataset samples of a batch's records (`features`: datasets.Features)."""
    num_classes = features["label"].num_classes
    mixed = mixed_labels(batch.labels, batch.preds, batch.is_adversarial, num_classes)
    success = batch.success()
    samples = []
    for i, key in enumerate(batch.keys):
        meta = {
            "key": key,
            "source_id": batch.source_ids[i],
            "label": int(batch.labels[i]),
            "pred": int(batch.preds[i]),
            "is_adversarial": batch.is_adversarial,
            "attack": batch.attack,
            "attack_params": batch.attack_params,
            "success": success[i],
            "linf": float(np.float32(batch.linf[i])),
            "l2": float(np.float32(batch.l2[i])),
            "mixed_label": mixed[i].tolist(),
        }
        sample = {
            "__key__": key,
            "png": batch.pngs[i],
            "json": json.dumps(meta, sort_keys=True).encode(),
        }
        for name, array in batch.genome.items():
            if isinstance(features[name], Image):
                sample[f"{name}.png"] = encode_png(array[i])
            else:
                sample[f"{name}.npy"] = npy_bytes(array[i])
        samples.append(sample)
    return samples


def tar_samples(path: Path) -> int:
    """Samples in a shard; a member that is not a regular file with a safe name and a known
    suffix (.png .json .npy: never .pyd or .pickle) is a CorpusError."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    for member in members:
        name = member.name
        if not member.isfile() or "/" in name or name.startswith(".") or "\\" in name:
            raise CorpusError(f"{path.name}: member {name!r} is not a plain file name")
        if not name.endswith(TAR_SUFFIXES):
            raise CorpusError(
                f"{path.name}: member {name!r} has a suffix outside {', '.join(TAR_SUFFIXES)}"
            )
    return len({m.name.split(".", 1)[0] for m in members})


class TarWriter(ShardWriter):
    """One tar; members sorted per sample."""

    def _open(self, path: Path) -> None:
        import webdataset as wds  # imports torch: only a build writes tars

        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in _close
        self._tar = wds.TarWriter(
            self._file, user=TAR_OWNER, group=TAR_OWNER, mode=0o644, mtime=TAR_MTIME, encoder=False
        )

    def _write(self, batch: RecordBatch) -> None:
        for sample in to_samples(batch, self.features):
            self._tar.write(sample)

    def _close(self) -> None:
        self._tar.close()
        self._file.close()


class WebDataset(OutputFormat):
    name = "webdataset"
    folder = "wds"
    suffix = ".tar"
    media_type = "application/x-tar"
    per_attack = False
    writer = TarWriter

    def rows(self, path: Path) -> int:
        try:
            return tar_samples(path)
        except (tarfile.TarError, OSError) as err:
            raise CorpusError(f"not a readable tar file ({first_line(err)})") from None

    def column_bytes(self, path: Path) -> dict[str, int]:
        sizes: dict[str, int] = {}
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                suffix = member.name.split(".", 1)[1]
                sizes[suffix] = sizes.get(suffix, 0) + member.size
        return sizes


WEBDATASET = WebDataset()
