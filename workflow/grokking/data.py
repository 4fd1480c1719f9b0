"""The toy addition dataset, built exactly as the report's public code builds it.

Reference: code/toy_model/toy_model_run.py of isadrtdinov/grokking-reproduction (DESIGN section 5).
Inputs are the pairs (a, b) with a <= b, enumerated from ``np.meshgrid`` (b outer, a inner); the label
is a + b. The split is sklearn's ``train_test_split(train_size=45/55, random_state=seed)``, which is
the permutation ``RandomState(seed).permutation(n)`` with validation first. Regression targets are the
first torch draw after seeding: ``torch.randn(2p - 1, dim)``.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class ToySplit:
    """One data seed's split of the toy task. Index tensors hold (a, b) token pairs."""

    data_seed: int
    x_train: torch.Tensor  # [n_train, 2] long
    y_train: torch.Tensor  # [n_train] long
    x_val: torch.Tensor  # [n_val, 2] long
    y_val: torch.Tensor  # [n_val] long
    targets: torch.Tensor  # [2p - 1, regression_dim] float32, regression target of each class


def toy_pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs a <= b in the reference order, and their labels a + b."""
    a, b = np.meshgrid(np.arange(p), np.arange(p))  # a varies fastest: b outer, a inner
    a, b = a.ravel(), b.ravel()
    keep = a <= b
    x = np.stack([a[keep], b[keep]], axis=1)
    return x, x.sum(axis=1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and random as the reference does; restore all three afterwards.

    The reference seeds the global generators; doing the same inside this context reproduces its
    random streams without leaking state into the caller.
    """
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def toy_split(p: int, train_size: int, regression_dim: int, data_seed: int) -> ToySplit:
    """Split and regression targets of one data seed; leaves global RNG state as it found it."""
    x, y = toy_pairs(p)
    n_val = len(x) - train_size
    with seeded(int(data_seed)):
        perm = np.random.RandomState(data_seed).permutation(len(x))
        targets = torch.randn(2 * p - 1, regression_dim)
    val, train = perm[:n_val], perm[n_val:]
    return ToySplit(
        data_seed=data_seed,
        x_train=torch.as_tensor(x[train]),
        y_train=torch.as_tensor(y[train]),
        x_val=torch.as_tensor(x[val]),
        y_val=torch.as_tensor(y[val]),
        targets=targets,
    )


def toy_dataset(study: dict) -> dict[int, ToySplit]:
    """Every split a study needs, keyed by data seed."""
    return {
        int(seed): toy_split(study["p"], study["train_size"], study["regression_dim"], int(seed))
        for seed in study["data_seeds"]
    }
