"""The `activations` encoder: per-layer pooled activations, no padding, magnitudes kept."""

from __future__ import annotations

import numpy as np
import torch

from afg_datasets.building import build_corpus
from afg_datasets.corpus.corpus import verify_corpus
from afg_datasets.genome import EncoderInputs, make_encoder
from afg_datasets.models import forward_with_taps

LAYERS = ("block1", "block2")


def _encoder(tiny_model, acts):
    channels = tuple(acts[n].shape[1] for n in LAYERS)
    inputs = EncoderInputs(LAYERS, channels, 0, tiny_model, (1, 8))
    return make_encoder({"encoder": "activations", "size": 2}, inputs)


def test_columns_are_per_layer_pooled_activations_with_magnitudes_kept(tiny_model):
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    _, acts = forward_with_taps(tiny_model, LAYERS, x)
    encoder = _encoder(tiny_model, acts)
    genome = encoder.encode(acts)
    assert set(genome) == {"genome_act_block1", "genome_act_block2"}
    for layer in LAYERS:
        pooled = torch.nn.functional.adaptive_avg_pool2d(acts[layer], 2).numpy()
        column = genome[f"genome_act_{layer}"]
        assert column.shape == (3, acts[layer].shape[1], 2, 2)  # its own width: no padding
        assert np.allclose(column.astype(np.float32), pooled, rtol=1e-3, atol=1e-3)
    doubled = encoder.encode({k: 2 * v for k, v in acts.items()})
    for name, column in genome.items():
        assert np.allclose(
            doubled[name].astype(np.float32), 2 * column.astype(np.float32), rtol=2e-3, atol=1e-3
        )


def test_the_differentiable_form_equals_the_stored_genome(tiny_model):
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    _, acts = forward_with_taps(tiny_model, LAYERS, x)
    acts = {k: v.detach().requires_grad_() for k, v in acts.items()}
    encoder = _encoder(tiny_model, acts)
    tensors = encoder.genome_tensors(acts)
    stored = encoder.encode(acts)
    for name, value in tensors.items():
        assert np.array_equal(value.detach().numpy(), stored[name].astype(np.float32))
    sum(v.sum() for v in tensors.values()).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in acts.values())


def test_an_activations_corpus_builds_verifies_and_loads(small_config, tmp_path):
    import afg_datasets

    cfg = small_config.replace(
        limit=8, attacks={"fgsm": {"eps": 0.2}}, genome__encoder="activations"
    )
    result = build_corpus(cfg, tmp_path / "act", progress=False)
    assert verify_corpus(result.out) == []
    columns = result.manifest["features"]["columns"]
    assert [c for c in columns if c.startswith("genome_")] == [
        "genome_act_block1",
        "genome_act_block2",
        "genome_act_block3",
    ]
    batch = next(iter(afg_datasets.dataloader(result.out, split="train", batch_size=4)))
    assert batch["genome_act_block3"].shape[1] == result.manifest["layers"][2]["channels"]
