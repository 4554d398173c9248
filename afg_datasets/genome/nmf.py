"""Batched non-negative matrix factorization in torch (multiplicative updates).

scikit-learn's NMF factorizes one matrix per call on the CPU; a corpus needs thousands of small
factorizations per batch on the model's device, so this runs them all at once with bmm.
"""

from __future__ import annotations

import torch

_EPS = 1e-10


def random_init(
    n_rows: int, n_cols: int, groups: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded starting point shared by every sample (sklearn's 'random' init, unscaled)."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(n_rows, groups, generator=generator, dtype=torch.float64)
    h = torch.rand(groups, n_cols, generator=generator, dtype=torch.float64)
    return w.to(device=device, dtype=torch.float32), h.to(device=device, dtype=torch.float32)


def batched_nmf(
    x: torch.Tensor, groups: int, iters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factorize each non-negative x[b] (N x C) as W[b] (N x G) @ H[b] (G x C).

    Groups come in canonical order: H rows have unit L2 norm (the scale moves into W) and groups
    are sorted by their share of the reconstruction (sum of W), largest first, so genomes are
    comparable across samples. Deterministic for a given seed.
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    x = x.float().clamp_min(0)
    batch, n_rows, n_cols = x.shape
    w0, h0 = random_init(n_rows, n_cols, groups, seed, x.device)
    scale = (x.mean(dim=(1, 2), keepdim=True) / groups).sqrt()
    w = w0.expand(batch, -1, -1) * scale
    h = h0.expand(batch, -1, -1) * scale
    xt = x.transpose(1, 2)
    for _ in range(iters):
        h = h * (w.transpose(1, 2) @ x) / (w.transpose(1, 2) @ w @ h + _EPS)
        w = w * (h @ xt).transpose(1, 2) / (w @ (h @ h.transpose(1, 2)) + _EPS)
    return canonical_order(w, h)


def canonical_order(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norms = h.norm(dim=2, keepdim=True)  # B x G x 1
    h = h / norms.clamp_min(_EPS)
    w = w * norms.transpose(1, 2)
    order = w.sum(dim=1).argsort(dim=1, descending=True, stable=True)  # B x G
    w = w.gather(2, order.unsqueeze(1).expand(-1, w.shape[1], -1))
    h = h.gather(1, order.unsqueeze(2).expand(-1, -1, h.shape[2]))
    return w, h


def relative_error(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """||x - W H||_F / ||x||_F per sample."""
    return (x - w @ h).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(_EPS)
