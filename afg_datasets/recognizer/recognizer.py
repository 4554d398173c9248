"""`Recognizer`: train on a corpus; save, load and share it through huggingface_hub's model
mixin (config.json + model.safetensors + a model card) with what genomes of new images need
(recognizer.json: the corpus facts; target_model/: its weights); predict on new images."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import Features
from pydantic import ValidationError
from safetensors import SafetensorError

from afg_datasets.checks import hub_repo_id
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.corpus.facts import CorpusFacts
from afg_datasets.documents import load_json
from afg_datasets.errors import ConfigError, CorpusError, ModelError, first_line
from afg_datasets.files import atomic_directory, foreign_entry
from afg_datasets.layout import (
    ENCODER_STATE_FILE,
    INFO_FILE,
    MODEL_FILE,
    RECOGNIZER_FILES,
    RECOGNIZER_OPTIONAL,
    write_json,
)
from afg_datasets.models import forward_with_taps, load_model_dir
from afg_datasets.models.target import scaled
from afg_datasets.recognizer.data import read_split, to_tensors
from afg_datasets.recognizer.model import RecognizerNet
from afg_datasets.recognizer.training import TrainConfig, fit_recognizer
from afg_datasets.schemas import SHAPES

INFO = "recognizer.json"  # (RECOGNIZER_FILES lists every file a saved recognizer holds)
TARGET_DIR = "target_model"


def read_saved_facts(path: Path) -> tuple[dict, CorpusFacts]:
    """recognizer.json and its corpus's facts, every field a `predict` uses typed and bounded
    as a build's own config is (a config of 10**6 groups would make `predict` run without
    end), its inputs among its corpus's genome columns: a ModelError naming the first
    problem."""
    info = load_json(path, ModelError)
    try:
        SHAPES["recognizer"].validate_python(info)
        facts = CorpusFacts.parse(info["manifest"])
        facts.genome_settings  # noqa: B018 (parsed: a setting out of bounds is refused here)
    except ConfigError as err:
        raise ModelError(f"{path}: manifest.config: {err}") from None
    except ValidationError as err:
        problem = err.errors()[0]
        at = ".".join(map(str, problem["loc"]))
        raise ModelError(f"{path}: {at}: {problem['msg']}") from None
    unknown = sorted(set(info["inputs"]) - set(facts.genome_columns))
    if unknown:
        raise ModelError(f"{path}: inputs {unknown} are not genome columns of its corpus")
    return info, facts


def model_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[0,1] float [N, C, H, W] from uint8 [N, H, W, C] or [N, H, W] (grey), or from float
    [N, C, H, W]; a ModelError naming the shape otherwise."""
    if not isinstance(images, torch.Tensor):
        array = np.asarray(images)
        if array.dtype != np.uint8 and array.dtype.kind != "f" or array.size == 0:
            raise ModelError(
                f"images of dtype {array.dtype} and shape {array.shape}: give uint8 [N, H, W, C]"
                " or [N, H, W], or [0, 1] floats [N, C, H, W], N >= 1"
            )
        images = array
    x = torch.as_tensor(images)
    if x.numel() == 0:
        raise ModelError(f"images of shape {tuple(x.shape)}: no images (N >= 1)")
    if x.dtype == torch.uint8 and x.ndim == 3:
        x = x[..., None]
    if x.dtype == torch.uint8 and x.ndim == 4:  # as the build scales them (its last bits too)
        return scaled(x.permute(0, 3, 1, 2))
    if x.is_floating_point() and x.ndim == 4:
        return torch.empty(x.shape, dtype=torch.float32).copy_(x)  # standard strides
    raise ModelError(
        f"images of shape {tuple(x.shape)} and dtype {x.dtype}: give uint8 [N, H, W, C] or "
        "[N, H, W], or [0, 1] floats [N, C, H, W]"
    )


class Recognizer:
    """A trained RecognizerNet plus what it needs to compute genomes of new images."""

    def __init__(
        self,
        net: RecognizerNet,
        facts: CorpusFacts,
        target_dir: Path,
        info: dict,
        corpus: Corpus | None = None,
    ):
        self.net = net.eval()
        self.facts = facts  # of the corpus it was trained on
        self.target_dir = Path(target_dir)
        self.info = info
        self.corpus = corpus  # where it was trained (its bench results go in the card)

    @classmethod
    def fit(
        cls,
        corpus: Corpus | str | Path,
        objective: str = "two_head",
        train_cfg: TrainConfig | None = None,
        progress: bool = False,
    ) -> Recognizer:
        """Train on the corpus's train split, early-stopped on its validation split."""
        corpus = Corpus.of(corpus).verify()
        for split, least in (("train", 2), ("validation", 1)):
            if corpus.records(split) < least:
                raise CorpusError(
                    f"corpus {str(corpus.root)!r} has {corpus.records(split)} {split} "
                    f"records; a recognizer needs at least {least} (train on it, stop early on "
                    "validation): build it from more source images"
                )
        inputs = corpus.genome_columns
        train_data = to_tensors(read_split(corpus, "train", images=False), inputs)
        val_data = to_tensors(read_split(corpus, "validation", images=False), inputs)
        cfg = train_cfg or TrainConfig()
        net, history = fit_recognizer(
            inputs,
            train_data,
            val_data,
            corpus.facts.num_classes,
            objective,
            cfg,
            progress=progress,
        )
        info = {
            "objective": objective,
            "inputs": inputs,
            "seed": cfg.seed,
            **history,
            "corpus": corpus.facts.identity,
        }
        return cls(net, corpus.facts, corpus.model_dir, info, corpus)

    def save(self, path: str | Path) -> Path:
        """The mixin's config.json + model.safetensors, recognizer.json, target_model/ and a
        model card (README.md) naming the corpus, its config hash, bench table and threat
        model."""
        from afg_datasets.recognizer.card import write_model_card

        path = Path(path)
        foreign = foreign_entry(path.parent, [path.name], [])
        if foreign:
            raise ModelError(foreign)
        if path.is_dir() and any(path.iterdir()) and not (path / INFO).is_file():
            raise ModelError(f"{path}: not empty and not a saved recognizer; choose a new folder")
        info = {**self.info, "manifest": self.facts.saved()}

        def fill(tmp: Path) -> None:  # all of it, or nothing, in a folder made here
            (tmp / TARGET_DIR).mkdir(parents=True)
            write_json(tmp / INFO, info)
            for name in (INFO_FILE, MODEL_FILE, ENCODER_STATE_FILE):
                if (self.target_dir / name).is_file():  # the state: stateful encoders only
                    shutil.copyfile(self.target_dir / name, tmp / TARGET_DIR / name)
            write_model_card(tmp / "README.md", info, self.facts, self.corpus)  # the mixin keeps it
            self.net.save_pretrained(tmp)

        atomic_directory(path, fill, replace=True)  # an earlier save is replaced when complete
        self.target_dir = path / TARGET_DIR
        return path

    @classmethod
    def from_pretrained(cls, repo_or_dir: str | Path, revision: str | None = None) -> Recognizer:
        """A saved recognizer from a local folder or a Hub model repo (only its known files
        are downloaded). Weights through safetensors, everything else JSON: no pickle."""
        local = Path(repo_or_dir)
        if not local.is_dir():
            from huggingface_hub import snapshot_download

            hub_repo_id(str(repo_or_dir), "a recognizer's folder or Hub repo")

            local = Path(
                snapshot_download(
                    str(repo_or_dir),
                    revision=revision,
                    allow_patterns=[*RECOGNIZER_FILES, *RECOGNIZER_OPTIONAL],
                )
            )
        missing = [name for name in RECOGNIZER_FILES[1:] if not (local / name).is_file()]
        if missing:
            raise ModelError(f"{repo_or_dir}: not a saved recognizer (missing {missing})")
        info, facts = read_saved_facts(local / INFO)
        load_json(local / "config.json", ModelError)  # the mixin's: an object, bounded
        try:
            net = RecognizerNet.from_pretrained(local, strict=True)
        except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
            first = first_line(err)
            raise ModelError(f"{repo_or_dir}: unreadable saved recognizer: {first}") from None
        return cls(net, facts, local / TARGET_DIR, info)

    load = from_pretrained

    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability adversarial, original class) for images: uint8 [N,H,W,C] or [N,H,W]
        (grey, as `load_dataset` gives them), or [0,1] float [N,C,H,W]. Genomes come from the
        corpus's own target model and encoder (`genomes`)."""
        preds, genome = self.genomes(images)
        return self.predict_genomes(genome, preds)

    @torch.no_grad()
    def genomes(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, dict]:
        """(the target model's predictions, the genome columns) of images, computed as the
        corpus's build computed them: the same encoder, from the facts the corpus recorded."""
        x = model_batch(images)
        target, encoder = self._model_and_encoder
        step = self.facts.batch_size  # the build's batches, at most
        parts = []
        try:
            for start in range(0, len(x), step):
                preds, acts = forward_with_taps(target, encoder.layers, x[start : start + step])
                parts.append((preds.numpy(), encoder.encode(acts)))
        except (RuntimeError, ValueError, KeyError, IndexError) as err:
            raise ModelError(
                f"{self._where()}: images {tuple(x.shape)}: {first_line(err)}"
            ) from None
        genome = {name: np.concatenate([g[name] for _, g in parts]) for name in parts[0][1]}
        return np.concatenate([p for p, _ in parts]), genome

    @torch.no_grad()
    def predict_genomes(self, genome: dict, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict` from genome columns (as a corpus stores them, or as `genomes` gives them)
        and the target model's predictions."""
        try:
            tensors = {
                name: torch.from_numpy(np.asarray(genome[name], dtype=np.float32))
                for name in self.info["inputs"]
            }
            logits = self.net(tensors)
            p_adv, original = self.net.readout(logits, torch.as_tensor(np.asarray(preds)))
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as err:
            raise ModelError(f"{self._where()}: inconsistent: {first_line(err)}") from None
        return p_adv.numpy(), original.numpy()

    def _where(self) -> str:
        return f"saved recognizer {self.target_dir.parent}"

    @functools.cached_property
    def _model_and_encoder(self):
        """The target model and the corpus's encoder, built once; an encoder whose columns are
        not the ones its corpus recorded is one ModelError (a recognizer saved before 0.9 of a
        format 1.4+ corpus: save it again)."""
        target = load_model_dir(self.target_dir)[0]
        try:
            encoder = self.facts.genome_encoder(target, self.target_dir)
        except (RuntimeError, ValueError, KeyError, IndexError) as err:
            raise ModelError(f"{self._where()}: inconsistent: {first_line(err)}") from None
        recorded = self.facts.features["types"]
        computed = Features(encoder.features()).to_dict()
        for name in self.info["inputs"]:
            if _plain(computed.get(name)) != _plain(recorded.get(name)):
                raise ModelError(
                    f"{self._where()}: its encoder computes {name} as {computed.get(name)},"
                    f" its corpus stored {recorded.get(name)}; re-save it with this "
                    "afg-datasets (`afg fit-recognizer`)"
                )
        return target, encoder


def _plain(feature) -> object:
    """A feature as JSON would give it back (tuples as lists), for comparison."""
    return json.loads(json.dumps(feature))
