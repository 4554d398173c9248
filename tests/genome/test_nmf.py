import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from afg_datasets.genome import ENCODERS, EncoderInputs
from afg_datasets.genome.groupmap import GroupMapConfig
from afg_datasets.genome.nmf import batched_nmf, relative_error


def low_rank(batch=6, n=36, c=16, rank=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, rank, generator=g) @ torch.rand(batch, rank, c, generator=g)


def test_factors_are_nonnegative_and_reconstruct_low_rank_data():
    x = low_rank()
    w, h = batched_nmf(x, groups=3, iters=300, seed=0)
    assert w.shape == (6, 36, 3) and h.shape == (6, 3, 16)
    assert (w >= 0).all() and (h >= 0).all()
    assert relative_error(x, w, h).max() < 0.05


def test_reconstruction_close_to_scikit_learn():
    x = low_rank(batch=4, rank=6)
    w, h = batched_nmf(x, groups=4, iters=300, seed=0)
    ours = relative_error(x, w, h).numpy()
    for i in range(4):
        model = NMF(n_components=4, init="nndsvda", max_iter=500, random_state=0)
        wi = model.fit_transform(x[i].numpy())
        ref = np.linalg.norm(x[i].numpy() - wi @ model.components_) / np.linalg.norm(x[i].numpy())
        assert ours[i] <= ref * 1.10 + 1e-3


def test_canonical_order_and_unit_channel_factors():
    w, h = batched_nmf(low_rank(), groups=3, iters=100, seed=0)
    share = w.sum(dim=1)
    assert (share[:, :-1] >= share[:, 1:]).all()
    assert torch.allclose(h.norm(dim=2), torch.ones(6, 3), atol=1e-4)


def test_batch_members_do_not_interact():
    x = low_rank()
    w_all, _ = batched_nmf(x, groups=3, iters=50, seed=0)
    w_one, _ = batched_nmf(x[2:3], groups=3, iters=50, seed=0)
    assert torch.allclose(w_all[2:3], w_one, rtol=1e-4, atol=1e-5)


def test_deterministic_and_rejects_bad_groups():
    x = low_rank()
    assert torch.equal(batched_nmf(x, 3, 20, 7)[0], batched_nmf(x, 3, 20, 7)[0])
    with pytest.raises(ValueError, match="groups"):
        batched_nmf(x, 0, 10, 0)


def test_groupmap_shapes_and_padding():
    encoder = ENCODERS["groupmap"](
        GroupMapConfig(groups=2, size=4, nmf_iters=10), EncoderInputs(("a", "b"), (4, 8), 0)
    )
    acts = {"a": torch.rand(3, 4, 8, 8), "b": torch.rand(3, 8, 2, 2)}
    genome = encoder.encode(acts)
    assert genome["genome_spatial"].shape == (3, 2, 2, 4, 4)
    assert genome["genome_channels"].shape == (3, 2, 2, 8)
    assert genome["genome_spatial"].dtype == np.float16
    assert not genome["genome_channels"][:, 0, :, 4:].any(), "narrow layer is zero-padded"
    assert set(genome) == set(encoder.features())
