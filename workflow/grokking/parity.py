"""Sparse parity (paper 002; Barak et al. 2022, Merrill et al. 2023): data, model, losses, label noise.

The (n, k)-parity task: inputs x in {-1, 1}^n drawn uniformly at random, label prod_{i<=k} x_i. Paper
002 uses n = 50, k = 2, 300 training and 100 test samples and a one-hidden-layer ReLU network of
width 500. Where its text is silent the defaults follow the code it builds on (Merrill et al.,
Tsili42/parity-nn): ``Linear(n, width) -> ReLU -> Linear(width, 1, bias=False)`` with PyTorch's
default initialisation, plain SGD with L2 weight decay, batch 32, and the hinge loss
``max(0, 1 - y f(x))``; a prediction is correct when ``sign(f(x)) == y`` (0 counts as wrong).

Seeds: a data seed draws one training and one test set (the public code drew a new training set per
run and one fixed test set); a model seed the initialisation (``torch.manual_seed``) and, with the
study's batch seed, the batch order. Label noise (002's Hypothesis 2) flips each training label
with probability p_t, drawn from uniforms seeded by the data and model seeds: a larger p_t flips a
superset of the labels a smaller one flips, so a sweep of p_t changes one thing at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("hinge", "squared", "logistic")


@dataclass(frozen=True)
class ParitySplit:
    """One data seed's samples: ``x_*`` [rows, n] of +-1, ``y_*`` [rows] of +-1 (clean labels)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def parity_labels(x: torch.Tensor, k: int) -> torch.Tensor:
    """prod_{i<=k} x_i of every row: the parity of the first k coordinates, as +-1."""
    return x[:, :k].prod(dim=1)


def parity_split(n: int, k: int, n_train: int, n_test: int, seed: int) -> ParitySplit:
    """Training and test samples of one data seed, drawn independently (repeats are possible, as in
    the public code: 2^50 inputs make them vanishingly rare)."""
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.randint(0, 2, (n_train + n_test, n), generator=generator).float() * 2 - 1
    y = parity_labels(x, k)
    return ParitySplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def flipped_labels(y: torch.Tensor, probability: float, data_seed: int, model_seed: int) -> torch.Tensor:
    """The training labels with each flipped with ``probability`` (nested across probabilities)."""
    if probability <= 0:
        return y.clone()
    uniforms = np.random.default_rng([int(data_seed), int(model_seed), 2]).random(len(y))
    flips = torch.from_numpy(uniforms < probability)
    return torch.where(flips, -y, y)


class ParityMLP(nn.Module):
    """``hidden``: Linear(n, width) with ReLU; ``readout``: Linear(width, 1), without bias by default.
    The output is one real number per input, whose sign is the prediction."""

    def __init__(self, n: int, width: int, readout_bias: bool = False):
        super().__init__()
        self.hidden = nn.Linear(n, width)
        self.readout = nn.Linear(width, 1, bias=readout_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(x))).squeeze(-1)


def build_model(n: int, width: int, model_seed: int, readout_bias: bool = False) -> ParityMLP:
    """The model of one run, initialised from its model seed alone."""
    torch.manual_seed(int(model_seed))
    return ParityMLP(n, width, readout_bias)


def sample_losses(output: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss of outputs f(x) against +-1 labels: hinge max(0, 1 - y f), squared (f - y)^2,
    or logistic log(1 + exp(-y f))."""
    margin = output * y
    if loss == "hinge":
        return F.relu(1 - margin)
    if loss == "squared":
        return (output - y) ** 2
    if loss == "logistic":
        return F.softplus(-margin)
    raise ValueError(f"unknown parity loss {loss!r} (known: {', '.join(LOSSES)})")


def correct(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Right answers: sign(f(x)) == y, so an output of exactly 0 is wrong (as the public code)."""
    return torch.sign(output) == y
