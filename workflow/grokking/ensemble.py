"""Stacked parameters of M independent networks and their batched forward pass.

Every parameter has a leading member dimension; a layer is one ``torch.baddbmm`` over all members,
so one backward pass yields every member's gradients and members never mix: member m's outputs and
gradients depend on member m's parameters and inputs only (a NaN in one member stays there).

Weights are stored as ``[M, in, out]`` (the transpose of ``nn.Linear.weight``) so that
``x @ W + b`` is a plain batched matmul; biases as ``[M, 1, out]`` so they broadcast over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Params = dict[str, torch.Tensor]

ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
}


@dataclass(frozen=True)
class Layer:
    """One affine map of the network: ``act(x @ weight + bias)``; bias and act are optional."""

    weight: str
    bias: str | None
    activation: str | None


@dataclass(frozen=True)
class Architecture:
    """The layers in order, and which optimizer group each parameter belongs to."""

    layers: tuple[Layer, ...]
    groups: dict[str, tuple[str, ...]]

    @property
    def param_names(self) -> list[str]:
        return [name for names in self.groups.values() for name in names]


def toy_architecture(activation: str) -> Architecture:
    """Embedding then decoder. The embedding is a bias-free linear map of one-hot inputs.

    The input row of pair (a, b) is onehot(a) + onehot(b), so ``x @ E`` is exactly E_a + E_b (sums
    of products with 0 and 1 are exact), and the embedding's gradient is a matmul: deterministic on
    every device, unlike the scatter-add of an index gather.
    """
    decoder = ("w0", "b0", "w1", "b1", "w2", "b2")
    return Architecture(
        layers=(
            Layer("embedding", None, None),
            Layer("w0", "b0", activation),
            Layer("w1", "b1", activation),
            Layer("w2", "b2", None),
        ),
        groups={"embedding": ("embedding",), "decoder": decoder},
    )


def stack_toy_models(models: list[nn.Module], dtype: torch.dtype, device: torch.device) -> Params:
    """Copy reference ToyModels into stacked tensors (one leading member dimension)."""
    params: Params = {
        "embedding": torch.stack([m.embedding.weight.detach() for m in models]),  # [M, p, d]
    }
    linears = [[layer for layer in m.decoder if isinstance(layer, nn.Linear)] for m in models]
    for i in range(len(linears[0])):
        params[f"w{i}"] = torch.stack([ls[i].weight.detach().T for ls in linears])  # [M, in, out]
        params[f"b{i}"] = torch.stack([ls[i].bias.detach()[None, :] for ls in linears])  # [M, 1, out]
    return {k: v.to(device=device, dtype=dtype).contiguous() for k, v in params.items()}


def forward(arch: Architecture, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Batched forward: x [M, n, in] -> [M, n, out]."""
    for layer in arch.layers:
        weight = params[layer.weight]
        if layer.bias is None:
            x = torch.bmm(x, weight)
        else:
            x = torch.baddbmm(params[layer.bias], x, weight)
        if layer.activation is not None:
            x = ACTIVATION_FUNCTIONS[layer.activation](x)
    return x


def one_hot_pairs(pairs: torch.Tensor, p: int, dtype: torch.dtype) -> torch.Tensor:
    """[..., n, 2] token pairs -> [..., n, p] rows onehot(a) + onehot(b)."""
    return F.one_hot(pairs, p).sum(-2).to(dtype)
