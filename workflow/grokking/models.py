"""Reference models as plain ``nn.Module`` s, built in the report's construction order.

These are the ground truth: the stacked ensemble copies its initial weights from them (so a cell
starts from the same numbers as the public code with the same seed), and the tests train them with
``torch.optim.AdamW`` to check the engine step for step.
"""

from __future__ import annotations

import torch
from torch import nn

from grokking.data import seeded

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)  # report appendix B: LeakyReLU(0.1)
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


class ToyModel(nn.Module):
    """Embedding(p, d) followed by the decoder d -> hidden -> hidden -> out on E_a + E_b."""

    def __init__(
        self, p: int, out_dim: int, hidden: int, embedding_dim: int, activation: str, init: float
    ):
        super().__init__()
        # Order matters for the RNG stream: embedding, its uniform re-init, then the decoder.
        self.embedding = nn.Embedding(p, embedding_dim)
        nn.init.uniform_(self.embedding.weight, -init, init)
        self.decoder = nn.Sequential(
            nn.Linear(embedding_dim, hidden),
            make_activation(activation),
            nn.Linear(hidden, hidden),
            make_activation(activation),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:  # pairs [n, 2] -> [n, out_dim]
        emb = self.embedding(pairs)  # [n, 2, d]
        return self.decoder(emb[:, 0] + emb[:, 1])


def toy_out_dim(study: dict) -> int:
    n_classes = 2 * study["p"] - 1
    return n_classes if study["objective"] == "classification" else study["regression_dim"]


def build_toy_model(study: dict, activation: str, model_seed: int) -> ToyModel:
    """The reference model for one cell, seeded exactly like the public code; global RNG restored."""
    with seeded(model_seed):
        return ToyModel(
            p=study["p"],
            out_dim=toy_out_dim(study),
            hidden=study["hidden"],
            embedding_dim=study["embedding_dim"],
            activation=activation,
            init=study["embedding_init"],
        )
