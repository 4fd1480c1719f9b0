"""A batched AdamW: one optimizer over stacked members, learning rate and weight decay per member.

The arithmetic is ``torch.optim.AdamW``'s single-tensor path (PyTorch 2.x), operation for operation,
so an ensemble member follows the same trajectory as a plain model with its own AdamW; the tests
check this. Parameter groups (e.g. the toy embedding's fixed lr) are per-member vectors per group.

The update is elementwise and memory-bound, so it is fused: ``torch.compile`` turns the per-tensor
chain of eight operations into one loop. Step-dependent scalars are passed as tensors and shapes are
dynamic, so neither the step count nor the number of members (which shrinks as members stop)
triggers a recompilation.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from grokking.ensemble import Params


def _adamw_update(
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
    for param, grad, exp_avg, exp_avg_sq, decay, neg_step_size in zip(
        params, grads, exp_avgs, exp_avg_sqs, decays, neg_step_sizes
    ):
        param.mul_(decay)  # decoupled weight decay: p *= 1 - lr * wd
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.add_(neg_step_size * exp_avg / denom)  # = addcdiv_(exp_avg, denom, value=-step_size)


_compiled_update: Callable | None = None


def _fused_update() -> Callable:
    global _compiled_update
    if _compiled_update is None:
        _compiled_update = torch.compile(_adamw_update, dynamic=True)
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
        # Hyperparameters are kept in float64 and rounded once, as Python floats are in torch.
        self.lr = {g: v.to(torch.float64) for g, v in lr.items()}  # [M] per group
        self.weight_decay = {g: v.to(torch.float64) for g, v in weight_decay.items()}
        self.betas = betas
        self.eps = eps
        self.compile = compile
        self.step_count = 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self._refresh_decay()

    def _member_view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def _refresh_decay(self) -> None:
        self._decay = {
            n: self._member_view(1 - self.lr[g] * self.weight_decay[g], self.params[n])
            for n, g in self.group_of.items()
        }

    @torch.no_grad()
    def step(self, grads: Params) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)
        names = list(self.group_of)
        neg_step = {g: -(lr / bias_correction1) for g, lr in self.lr.items()}
        like = self.params[names[0]]
        update = _fused_update() if self.compile else _adamw_update
        update(
            [self.params[n] for n in names],
            [grads[n] for n in names],
            [self.exp_avg[n] for n in names],
            [self.exp_avg_sq[n] for n in names],
            [self._decay[n] for n in names],
            [self._member_view(neg_step[self.group_of[n]], self.params[n]) for n in names],
            torch.tensor(bias_correction2_sqrt, dtype=like.dtype, device=like.device),
            beta1,
            beta2,
            self.eps,
        )

    def select(self, params: Params, keep: torch.Tensor) -> None:
        """Keep only members ``keep`` (compaction); ``params`` are the already-compacted tensors."""
        self.params = params
        self.exp_avg = {n: v.index_select(0, keep) for n, v in self.exp_avg.items()}
        self.exp_avg_sq = {n: v.index_select(0, keep) for n, v in self.exp_avg_sq.items()}
        cpu_keep = keep.to(self.lr[next(iter(self.lr))].device)
        self.lr = {g: v.index_select(0, cpu_keep) for g, v in self.lr.items()}
        self.weight_decay = {g: v.index_select(0, cpu_keep) for g, v in self.weight_decay.items()}
        self._refresh_decay()
