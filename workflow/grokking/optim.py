"""A batched AdamW: one optimizer over stacked members, learning rate and weight decay per member.

The arithmetic is ``torch.optim.AdamW``'s single-tensor path (PyTorch 2.x), operation for operation,
so an ensemble member follows the same trajectory as a plain model with its own AdamW; the tests
check this. Parameter groups (e.g. the toy embedding's fixed lr) are per-member vectors per group.

The update is elementwise, so it is fused: ``torch.compile`` turns the per-tensor chain of
operations into one loop (the toy engine inlines ``adamw_update`` into its compiled training step
instead, ``grokking.toy_step``). The per-member factors (``1 - lr * wd`` and ``-lr / bias_correction1``,
formed in float64 and rounded once, as torch does with its Python floats) are computed before the
loop, once per shard and once per step: formed inside it, they cost a float64 division per vector of
parameters (5-16 % of the update's time, measured at 21 members). Step-dependent values are passed as tensors and shapes
are dynamic, so neither the step count nor the number of members (which shrinks as members stop)
triggers a recompilation.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from grokking.ensemble import Params


def adamw_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    decays: list[torch.Tensor],
    neg_step_sizes: list[torch.Tensor],
    bias_correction2_sqrt: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One AdamW step of every member, in place. ``decays`` (``1 - lr * wd``) and ``neg_step_sizes``
    (``-lr / bias_correction1``) are each parameter's per-member factors [M] in its dtype
    (``BatchedAdamW.next_step_arguments``). A pure function, so a larger compiled training step can
    inline it."""
    for param, grad, exp_avg, exp_avg_sq, decay, neg_step_size in zip(
        params, grads, exp_avgs, exp_avg_sqs, decays, neg_step_sizes
    ):
        per_member = (-1,) + (1,) * (param.dim() - 1)
        param.mul_(decay.view(per_member))  # decoupled weight decay: p *= 1 - lr * wd
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.add_(neg_step_size.view(per_member) * exp_avg / denom)  # = addcdiv_(exp_avg, denom, value=-step_size)


_compiled_update: Callable | None = None


def _fused_update() -> Callable:
    global _compiled_update
    if _compiled_update is None:
        _compiled_update = torch.compile(adamw_update, dynamic=True)
    return _compiled_update


class BatchedAdamW:
    """AdamW over stacked parameters ``[M, ...]`` with per-member, per-group lr and weight decay."""

    def __init__(
        self,
        params: Params,
        groups: dict[str, tuple[str, ...]],
        lr: dict[str, torch.Tensor],
        weight_decay: dict[str, torch.Tensor],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        compile: bool = True,
    ):
        self.params = params
        self.groups = groups
        self.group_of = {name: group for group, names in groups.items() for name in names}
        self.param_names = list(self.group_of)  # the order of every list passed to adamw_update
        # Hyperparameters are kept in float64 and rounded once, as Python floats are in torch.
        self.lr = {g: v.to(torch.float64) for g, v in lr.items()}  # [M] per group
        self.weight_decay = {g: v.to(torch.float64) for g, v in weight_decay.items()}
        like = next(iter(params.values()))
        self.dtype, self.device = like.dtype, like.device  # of the per-member factors
        self.decay = self._decays()
        self.betas = betas
        self.eps = eps
        self.compile = compile
        self.step_count = 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    def _decays(self) -> dict[str, torch.Tensor]:
        """``1 - lr * wd`` per group and member, formed in float64 and rounded once."""
        return {g: (1 - self.lr[g] * self.weight_decay[g]).to(self.device, self.dtype) for g in self.lr}

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return ``adamw_update``'s arguments besides params and grads (in
        ``param_names`` order): for a caller that runs the update inside its own compiled step."""
        self.step_count += 1
        beta1, beta2 = self.betas
        names = self.param_names
        bias_correction1 = 1 - beta1**self.step_count
        # -(lr / bc1) in float64, rounded once: torch's addcdiv_(value=-step_size) with a Python float
        neg_step_size = {g: (lr / -bias_correction1).to(self.device, self.dtype) for g, lr in self.lr.items()}
        return {
            "exp_avgs": [self.exp_avg[n] for n in names],
            "exp_avg_sqs": [self.exp_avg_sq[n] for n in names],
            "decays": [self.decay[self.group_of[n]] for n in names],
            "neg_step_sizes": [neg_step_size[self.group_of[n]] for n in names],
            "bias_correction2_sqrt": torch.tensor(math.sqrt(1 - beta2**self.step_count),
                                                  dtype=self.dtype, device=self.device),
            "beta1": beta1,
            "beta2": beta2,
            "eps": self.eps,
        }

    @torch.no_grad()
    def step(self, grads: Params) -> None:
        update = _fused_update() if self.compile else adamw_update
        names = self.param_names
        update([self.params[n] for n in names], [grads[n] for n in names], **self.next_step_arguments())

    def select(self, params: Params, keep: torch.Tensor) -> None:
        """Keep only members ``keep`` (compaction); ``params`` are the already-compacted tensors."""
        self.params = params
        self.exp_avg = {n: v.index_select(0, keep) for n, v in self.exp_avg.items()}
        self.exp_avg_sq = {n: v.index_select(0, keep) for n, v in self.exp_avg_sq.items()}
        cpu_keep = keep.to(self.lr[next(iter(self.lr))].device)
        self.lr = {g: v.index_select(0, cpu_keep) for g, v in self.lr.items()}
        self.weight_decay = {g: v.index_select(0, cpu_keep) for g, v in self.weight_decay.items()}
        self.decay = self._decays()
