"""The written-out backward pass against autograd, and the toy step's loss gradient."""

from __future__ import annotations

import pytest
import torch

from grokking import ensemble
from grokking.toy_step import toy_loss


def random_params(arch: ensemble.Architecture, sizes: dict[str, tuple[int, int]], M: int) -> ensemble.Params:
    gen = torch.Generator().manual_seed(0)
    params = {}
    for layer in arch.layers:
        fan_in, fan_out = sizes[layer.weight]
        params[layer.weight] = torch.randn(M, fan_in, fan_out, generator=gen, dtype=torch.float64) / fan_in**0.5
        if layer.bias is not None:
            params[layer.bias] = torch.randn(M, 1, fan_out, generator=gen, dtype=torch.float64) * 0.1
    return params


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("classification", [True, False])
def test_backward_equals_autograd(activation, classification):
    M, p, rows, n_train, hidden, k = 3, 10, 55, 45, 16, 19
    arch = ensemble.toy_architecture(activation)
    sizes = {"embedding": (p, 1), "w0": (1, hidden), "w1": (hidden, hidden), "w2": (hidden, k)}
    params = random_params(arch, sizes, M)
    pairs = torch.randint(0, p, (M, rows, 2), generator=torch.Generator().manual_seed(1))
    x = ensemble.one_hot_pairs(pairs, p, torch.float64)
    labels = (pairs[..., 0] + pairs[..., 1]) % k
    targets = torch.zeros(M, 0, 0)
    if not classification:  # regression: MSE to one of k random 30-dimensional target vectors
        targets = torch.randn(M, k, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        sizes["w2"] = (hidden, 30)
        params = random_params(arch, sizes, M)

    activations = ensemble.forward_with_activations(arch, params, x)
    loss, grad_out, _ = toy_loss(activations[-1], labels, targets, n_train, classification)
    written_out = ensemble.backward(arch, params, activations, grad_out, n_train)

    leaves = {n: v.clone().requires_grad_() for n, v in params.items()}
    out = ensemble.forward(arch, leaves, x)
    if classification:
        reference_loss = torch.nn.functional.cross_entropy(
            out[:, :n_train].reshape(-1, k), labels[:, :n_train].reshape(-1), reduction="none"
        ).view(M, n_train).mean(1)
    else:
        wanted = targets.gather(1, labels[:, :n_train, None].expand(-1, -1, 30))
        reference_loss = (out[:, :n_train] - wanted).pow(2).mean((1, 2))
    torch.testing.assert_close(loss, reference_loss.detach(), rtol=1e-12, atol=1e-14)
    autograd = torch.autograd.grad(reference_loss.sum(), list(leaves.values()))
    assert set(written_out) == set(leaves)
    for name, expected in zip(leaves, autograd):
        torch.testing.assert_close(written_out[name], expected, rtol=1e-10, atol=1e-13, msg=name)


def test_members_do_not_mix():
    """A member's gradients depend on its own parameters only: changing member 0 leaves member 1's."""
    arch = ensemble.toy_architecture("tanh")
    sizes = {"embedding": (10, 1), "w0": (1, 8), "w1": (8, 8), "w2": (8, 19)}
    params = random_params(arch, sizes, 2)
    x = ensemble.one_hot_pairs(torch.randint(0, 10, (2, 55, 2)), 10, torch.float64)
    labels = torch.randint(0, 19, (2, 55))

    def grads(ps):
        acts = ensemble.forward_with_activations(arch, ps, x)
        _, g, _ = toy_loss(acts[-1], labels, torch.zeros(2, 0, 0), 45, True)
        return ensemble.backward(arch, ps, acts, g, 45)

    before = grads(params)
    changed = {n: v.clone() for n, v in params.items()}
    changed["w1"][0] *= 3.0
    after = grads(changed)
    for name in params:
        assert torch.equal(before[name][1], after[name][1]), name
    assert not torch.equal(before["w1"][0], after["w1"][0])
