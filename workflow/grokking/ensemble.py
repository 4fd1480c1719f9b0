"""Stacked parameters of M independent networks and their batched forward pass.

Every parameter has a leading member dimension; a layer is one ``torch.baddbmm`` over all members,
so one backward pass yields every member's gradients and members never mix: member m's outputs and
gradients depend on member m's parameters and inputs only (a NaN in one member stays there).

Weights are stored as ``[M, in, out]`` (the transpose of ``nn.Linear.weight``) so that
``x @ W + b`` is a plain batched matmul; biases as ``[M, 1, out]`` so they broadcast over rows.
"""

from __future__ import annotations

import functools
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

# dL/dz from the activation's output a = act(z) and dL/da: the formulas of autograd's tanh_backward,
# threshold_backward and leaky_relu_backward (a > 0 exactly where z > 0 for these three).
ACTIVATION_BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "tanh": lambda a, g: g * (1 - a * a),
    "relu": lambda a, g: torch.where(a > 0, g, 0.0),
    "leaky_relu": lambda a, g: torch.where(a > 0, g, g * 0.1),
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


@functools.cache  # one object per activation: compiled training steps are specialised on it
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


def apply_layer(layer: Layer, params: Params, x: torch.Tensor) -> torch.Tensor:
    """One layer on every member: x [M, n, in] -> act(x @ W + b) [M, n, out]."""
    weight = params[layer.weight]
    if layer.bias is None:
        x = torch.bmm(x, weight)
    else:
        x = torch.baddbmm(params[layer.bias], x, weight)
    if layer.activation is not None:
        x = ACTIVATION_FUNCTIONS[layer.activation](x)
    return x


def forward(arch: Architecture, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Batched forward: x [M, n, in] -> [M, n, out]."""
    for layer in arch.layers:
        x = apply_layer(layer, params, x)
    return x


def forward_with_activations(arch: Architecture, params: Params, x: torch.Tensor) -> list[torch.Tensor]:
    """Batched forward that keeps what the backward pass needs: the input of every layer, then the
    output ([M, n, in] -> list of [M, n, width], last = network output)."""
    activations = [x]
    for layer in arch.layers:
        activations.append(apply_layer(layer, params, activations[-1]))
    return activations


def backward(arch: Architecture, params: Params, activations: list[torch.Tensor], grad_out: torch.Tensor,
             rows: int) -> Params:
    """Every parameter's gradient from dL/d(output) of the first ``rows`` rows ([M, rows, out]).

    The chain rule written out, with autograd's formulas: grad W = x^T g, grad b = sum of g over rows,
    grad x = g W^T. Rows past ``rows`` (validation rows that share the training forward) carry no
    loss, so they are left out of the products instead of multiplied by zeros. The network's input
    gets no gradient.
    """
    grads: Params = {}
    g = grad_out
    for i in reversed(range(len(arch.layers))):
        layer = arch.layers[i]
        if layer.activation is not None:
            g = ACTIVATION_BACKWARD[layer.activation](activations[i + 1][:, :rows], g)
        grads[layer.weight] = torch.bmm(activations[i][:, :rows].transpose(1, 2), g)
        if layer.bias is not None:
            grads[layer.bias] = g.sum(1, keepdim=True)
        if i > 0:
            g = torch.bmm(g, params[layer.weight].transpose(1, 2))
    return grads


def one_hot_pairs(pairs: torch.Tensor, p: int, dtype: torch.dtype) -> torch.Tensor:
    """[..., n, 2] token pairs -> [..., n, p] rows onehot(a) + onehot(b)."""
    return F.one_hot(pairs, p).sum(-2).to(dtype)
