"""Seeded training with early stopping on the validation split."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from afg_datasets.recognizer.model import RecognizerNet


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 4
    seed: int = 0


def _batches(data: Mapping[str, torch.Tensor], size: int, order: torch.Tensor):
    for chunk in order.split(size):
        yield {k: v[chunk] for k, v in data.items()}


@torch.no_grad()
def evaluate(net: RecognizerNet, data: Mapping[str, torch.Tensor], size: int = 1024):
    """(mean loss, raw outputs) over a dataset, in order."""
    net.eval()
    n = len(next(iter(data.values())))
    outputs, total = [], 0.0
    for batch in _batches(data, size, torch.arange(n)):
        logits = net(batch)
        total += float(net.loss(logits, batch)) * len(logits)
        outputs.append(logits)
    return total / max(n, 1), torch.cat(outputs) if outputs else torch.empty(0)


def train(
    net: RecognizerNet,
    train_data: Mapping[str, torch.Tensor],
    val_data: Mapping[str, torch.Tensor],
    cfg: TrainConfig,
    progress: bool = False,
) -> dict:
    """Adam; keeps the weights with the lowest validation loss; stops after `patience`;
    `progress` shows a bar of epochs with the validation loss."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net.fit_normalization(train_data)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        n = len(next(iter(train_data.values())))
        best, best_state, stale, epochs = float("inf"), None, 0, 0
        bar = tqdm(total=cfg.epochs, desc="train recognizer", unit="epoch", disable=not progress)
        for epoch in range(cfg.epochs):
            net.train()
            for batch in _batches(
                train_data, cfg.batch_size, torch.randperm(n, generator=generator)
            ):
                if len(batch["label"]) < 2:
                    continue  # BatchNorm needs two samples
                opt.zero_grad()
                net.loss(net(batch), batch).backward()
                opt.step()
            epochs = epoch + 1
            val_loss, _ = evaluate(net, val_data)
            bar.update()
            bar.set_postfix_str(f"validation loss {val_loss:.4f}")
            if val_loss < best - 1e-4:
                best, best_state, stale = val_loss, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"epochs": epochs, "best_val_loss": best}


def fit_recognizer(
    inputs: Sequence[str],
    train_data: Mapping[str, torch.Tensor],
    val_data: Mapping[str, torch.Tensor],
    num_classes: int,
    objective: str,
    cfg: TrainConfig,
    width: int = 16,
    progress: bool = False,
) -> tuple[RecognizerNet, dict]:
    """A recognizer over the `inputs` columns, built and trained under `cfg.seed` (so its
    initial weights are seeded too). Returns (net, training history)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = RecognizerNet(
            {n: tuple(train_data[n].shape[1:]) for n in inputs}, num_classes, objective, width
        )
    return net, train(net, train_data, val_data, cfg, progress)
