"""The adaptive attack differentiates through the detector: on a toy system it can fool, it
must raise the miss rate over the non-adaptive attack; the genome encoder passes gradients."""

import numpy as np
import torch
from torch import nn

from afg_datasets.evaluation import adaptive
from afg_datasets.genome import EncoderInputs
from afg_datasets.genome.groupmap import GroupMapEncoder
from afg_datasets.models import TargetModel


def toy_target() -> TargetModel:
    """Class 1 once the right half of a 1x4x4 image is brighter than 0.3 on average."""
    linear = nn.Linear(16, 2)
    right = torch.zeros(16)
    right[torch.arange(16) % 4 >= 2] = 1 / 8
    with torch.no_grad():
        linear.weight.copy_(torch.stack([-10 * right, 10 * right]))
        linear.bias.copy_(torch.tensor([1.5, -1.5]))
    net = nn.Sequential(nn.Flatten(), linear).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return TargetModel(net, [0.0], [1.0])


def toy_detector(images, acts):
    """Flags images brighter than 0.45 on average: plain PGD brightens, so it is caught."""
    return 40 * (images.flatten(1).mean(1) - 0.45), None


def test_adaptive_attack_evades_a_detector_that_catches_plain_pgd():
    target = toy_target()
    images = torch.zeros(32, 1, 4, 4)
    images[..., :2] = 128 / 255  # left half 0.5, right half 0.1: class 0, mean 0.3
    images[..., 2:] = 26 / 255
    labels = torch.zeros(32, dtype=torch.long)
    assert (target(images).argmax(1) == labels).all()
    budget = adaptive.Budget("linf", 0.4, 20, 0.05, "test")
    layers = ["1"]
    plain = adaptive.perturb(target, layers, None, 0.5, images, labels, budget, 0)
    tuned = adaptive.perturb(target, layers, toy_detector, 0.5, images, labels, budget, 0)
    before = adaptive.outcome(target, layers, toy_detector, 0.5, plain, labels)
    after = adaptive.outcome(target, layers, toy_detector, 0.5, tuned, labels)
    w = np.ones((1, 32))
    assert before["success"].all() and after["success"].all()
    assert adaptive.adaptive_metrics(before, w)["evasion_rate"][0] < 0.1
    assert adaptive.adaptive_metrics(after, w)["evasion_rate"][0] > 0.9
    # Tramer's check: what the detector's evasion rate implies for a classifier at eps / 2
    tramer = adaptive.adaptive_metrics(after, w)
    assert tramer["implied_robust_acc"][0] == 1 - tramer["evasion_rate"][0] < 0.1
    assert (tuned - images).abs().max() <= 0.4 + 1e-6, "within the budget"
    levels = tuned * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3), "whole uint8 levels"


def test_genome_tensors_equal_encode_and_carry_gradients():
    encoder = GroupMapEncoder(
        GroupMapEncoder.Config(groups=2, size=4, nmf_iters=20),
        EncoderInputs(("a", "b"), (3, 5), seed=0),
    )
    acts = {"a": torch.rand(2, 3, 8, 8, requires_grad=True), "b": torch.rand(2, 5, 4, 4)}
    genome = encoder.genome_tensors(acts)
    stored = encoder.encode({k: v.detach() for k, v in acts.items()})
    for name, tensor in genome.items():
        assert np.array_equal(tensor.detach().numpy().astype(np.float16), stored[name])
    sum(t.sum() for t in genome.values()).backward()
    grad = acts["a"].grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
