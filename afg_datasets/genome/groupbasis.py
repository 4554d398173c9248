"""`groupbasis` encoder: per layer, one NMF basis of G channel directions fitted once on clean
train activations and stored with the corpus (`model/genome_basis.safetensors`); every
record's genome is its spatial codes against that fixed basis (non-negative least squares),
so group g means the same thing in every record. Basis rows have unit norm, so the codes keep
the activations' magnitudes (nothing else is normalized)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array4D
from safetensors.torch import load_file, save

from afg_datasets.bounds import MAX_GENOME_SIZE, MAX_GROUPS, MAX_ITERS, MAX_SOURCES
from afg_datasets.checks import bounded, section
from afg_datasets.errors import CorpusError
from afg_datasets.files import atomic_write
from afg_datasets.genome.base import EncoderInputs, stacked_layers
from afg_datasets.genome.groupmap import _straight_through, half
from afg_datasets.genome.groupviz import LUCID_LR, mosaic, render
from afg_datasets.genome.nmf import batched_nmf
from afg_datasets.layout import ATLAS_FILE, ENCODER_STATE_FILE
from afg_datasets.models import forward_until

ATLAS_MAX_SIZE = 128  # the atlas's picture side at most (Lucid renders 80-128 px; 1.5)
ATLAS_CONTRAST = 3.0  # the atlas's weight on layer-mates' codes (1.5; see `contrast_objectives`)
POSITIONS_PER_IMAGE = 64  # spatial positions sampled per train image for the basis fit


def contrast_objectives(
    model, layers: list[str], directions: list[torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """The atlas's objective, per picture (layer-major, one per direction of a layer's basis
    `directions[l]` [1, G, C_l]): the mean over positions of its own direction's
    least-squares code (activations times the basis's pseudo-inverse) minus ATLAS_CONTRAST x
    the mean of its layer-mates' codes. Non-negative directions overlap, so a picture that
    only raises <activation, direction> also raises its layer-mates' (on the digits atlas 7
    of 12 pictures raised another direction more); least-squares codes separate them: every
    picture's own NNLS code, the genome's, is then the largest (1.5)."""
    values, offset = [], 0
    for layer, direction in zip(layers, directions, strict=True):
        basis = direction[0]  # [G, C]
        groups = len(basis)
        act = forward_until(model, [layer], x[offset : offset + groups])[layer].clamp_min(0)
        codes = torch.einsum("pchw,cg->pg", act, torch.linalg.pinv(basis)) / act[0, 0].numel()
        own = codes.diagonal()
        mates = (codes.sum(1) - own) / max(groups - 1, 1)
        values.append(own - ATLAS_CONTRAST * mates)
        offset += groups
    return torch.cat(values)


def atlas_picture(image_shape: tuple[int, int]) -> tuple[int, int]:
    """(channels, side) of an atlas picture: the model's input size, at most ATLAS_MAX_SIZE
    (format 1.5; a 224 px model renders at 128 px, a third of the cost per step)."""
    channels, size = image_shape
    return channels, min(size, ATLAS_MAX_SIZE)


@section("genome.")
class GroupBasisConfig:
    encoder: Literal["groupbasis"] = "groupbasis"
    groups: bounded(MAX_GROUPS) = 4  # basis directions per layer
    size: bounded(MAX_GENOME_SIZE) = 8  # code maps are resized to size x size
    nmf_iters: bounded(MAX_ITERS) = 100  # NMF iterations of the basis fit
    fit_images: bounded(MAX_SOURCES) = 512  # clean train images the basis is fitted on (first)
    nnls_iters: bounded(MAX_ITERS) = 100  # projected-gradient (FISTA) steps of each record's codes
    atlas_steps: bounded(MAX_ITERS) = 512  # the atlas: each direction rendered once (Lucid: 512)


class GroupBasisEncoder:
    """Genome = `genome_codes` [L, G, S, S] (float16): per layer, each basis direction's
    non-negative code at every position, resized to S x S."""

    name = "groupbasis"
    Config = GroupBasisConfig
    STATE_FILE = ENCODER_STATE_FILE
    ATLAS_FILE = ATLAS_FILE
    picture = None

    @classmethod
    def layer_arrays(cls, columns, layers):
        return stacked_layers(columns, layers, ["genome_codes"])

    def __init__(self, config: GroupBasisConfig, inputs: EncoderInputs):
        self.layers = tuple(inputs.layers)
        self.channels = tuple(inputs.channels)
        self.config = config
        self.seed = inputs.seed
        self.model, self.image_shape = inputs.model, inputs.image_shape  # for the atlas
        self.basis: dict[str, torch.Tensor] | None = None  # layer -> [G, C_l], unit rows

    def features(self) -> dict:
        shape = (len(self.layers), self.config.groups, self.config.size, self.config.size)
        return {"genome_codes": Array4D(shape=shape, dtype="float16")}

    def fit(self, batches: Iterable[Mapping[str, torch.Tensor]]) -> None:
        """Fit each layer's basis on the activations of clean train images (`batches`, in a
        fixed order): up to POSITIONS_PER_IMAGE positions of each image, drawn with the
        build's NMF seed."""
        rows: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        generator = torch.Generator().manual_seed(self.seed)
        for acts in batches:
            for layer in self.layers:
                x = acts[layer].detach().float().clamp_min(0).cpu().flatten(2).transpose(1, 2)
                picks = min(POSITIONS_PER_IMAGE, x.shape[1])
                order = torch.rand(x.shape[:2], generator=generator).argsort(1)[:, :picks]
                rows[layer].append(torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[2])))
        if not rows[self.layers[0]]:
            raise CorpusError("groupbasis: no clean train images to fit its basis on")
        self.basis = {}
        for index, layer in enumerate(self.layers):
            sample = torch.cat(rows[layer]).flatten(0, 1)[None]
            _, h = batched_nmf(sample, self.config.groups, self.config.nmf_iters, self.seed + index)
            self.basis[layer] = h[0].contiguous()

    def save_state(self, path: Path) -> None:
        """The basis as safetensors (tensors named by layer), written whole or not at all."""
        data = save(dict(self._basis()))
        atomic_write(path, lambda handle: handle.write(data))

    def load_state(self, path: Path) -> None:
        """The basis a corpus stores; one whose layers or shapes differ is a CorpusError."""
        try:
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - safetensors raises several kinds
            raise CorpusError(f"{path}: not a readable basis file ({err})") from None
        groups = self.config.groups
        pairs = zip(self.layers, self.channels, strict=True)
        shapes = {layer: (groups, channels) for layer, channels in pairs}
        found = {layer: tuple(t.shape) for layer, t in state.items()}
        if found != shapes:
            raise CorpusError(f"{path}: basis shapes {found}, this encoder needs {shapes}")
        self.basis = {layer: state[layer].float() for layer in self.layers}

    def atlas(self) -> tuple[np.ndarray, torch.Tensor]:
        """Each basis direction of each layer rendered once by feature visualization (Lucid's
        recipe at `atlas_steps`, lr 0.05, `atlas_picture`): (the atlas, uint8
        [L*(S+1)-1, G*(S+1)-1, C], rows layers and columns directions; the objective trace
        [steps + 2, L*G]). What a record's codes weigh: group g is the same picture in every
        record. Each picture maximizes `contrast_objectives`: its own direction, not its
        layer-mates'."""
        if self.model is None or self.image_shape is None:
            raise CorpusError("groupbasis: its atlas needs the target model")
        directions = [self._basis()[layer][None] for layer in self.layers]  # [1, G, C_l]
        channels, size = atlas_picture(self.image_shape)
        steps = self.config.atlas_steps
        args = (self.model, self.layers, directions, channels, size, steps, LUCID_LR, self.seed)
        images, trace = render(*args, objective=contrast_objectives)
        stored = images.mul(255).round().to(torch.uint8).transpose(0, 1).cpu().numpy()
        return mosaic(stored)[0], trace

    def codes(self, activations: Mapping[str, torch.Tensor], grad: bool = False) -> torch.Tensor:
        """[B, L, G, S, S]: per layer, the NNLS codes of every position, resized."""
        maps = []
        for layer, basis in self._basis().items():
            act = activations[layer] if grad else activations[layer].detach()
            act = act.float().clamp_min(0)
            batch, _, height, width = act.shape
            positions = act.flatten(2).transpose(1, 2)  # [B, HW, C]
            code = nnls(positions, basis.to(act.device), self.config.nnls_iters)  # [B, HW, G]
            code = code.transpose(1, 2).reshape(batch, -1, height, width)
            maps.append(self._resize(code))
        return torch.stack(maps, dim=1)

    def encode(
        self, activations: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Deterministic (a fixed basis, a fixed solver start): the batch `seed` is not drawn on."""
        return {"genome_codes": half(self.codes(activations))}

    def genome_tensors(self, activations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`encode`'s column with gradients through the unrolled solver (float16 rounding
        straight-through): what an adaptive attacker differentiates."""
        return {"genome_codes": _straight_through(self.codes(activations, grad=True))}

    def _basis(self) -> dict[str, torch.Tensor]:
        if self.basis is None:
            raise CorpusError("groupbasis: its basis is neither fitted nor loaded")
        return self.basis

    def _resize(self, maps: torch.Tensor) -> torch.Tensor:
        size = self.config.size
        if maps.shape[-2:] == (size, size):
            return maps
        shrink = maps.shape[-1] > size
        resized = F.interpolate(maps, (size, size), mode="bilinear", antialias=shrink)
        return resized.clamp_min(0)


def nnls(x: torch.Tensor, basis: torch.Tensor, iters: int) -> torch.Tensor:
    """argmin_{C >= 0} ||x - C basis||^2 for every row of x [B, N, K] and basis [G, K]:
    accelerated projected gradient (FISTA) from the clamped least-squares solution, with step
    1 / the Lipschitz constant. Batched, deterministic and differentiable (unrolled)."""
    gram = basis @ basis.T  # [G, G]
    step = 1.0 / torch.linalg.eigvalsh(gram.detach()).max().clamp_min(1e-12)
    target = x @ basis.T  # [B, N, G]
    code = (target @ torch.linalg.pinv(gram)).clamp_min(0)
    momentum, t = code, 1.0
    for _ in range(iters):
        updated = (momentum - step * (momentum @ gram - target)).clamp_min(0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = updated + ((t - 1) / t_next) * (updated - code)
        code, t = updated, t_next
    return code
