"""Batched optimizers: one optimizer over stacked members, learning rate and weight decay per member.

``BatchedAdamW``, ``BatchedAdam`` and ``BatchedSGD`` follow the single-tensor paths of
``torch.optim.AdamW``, ``torch.optim.Adam`` and ``torch.optim.SGD`` (PyTorch 2.x) operation for
operation, so an ensemble member follows the same trajectory as a plain model with its own torch
optimizer; ``tests/test_optim.py`` checks this bitwise in float64. Parameter groups (e.g. the toy
embedding's fixed lr) are per-member vectors per group. ``make_optimizer`` builds any of them by
name; all share ``step(grads)``, ``select(params, keep)`` (compaction) and ``state()`` /
``load_state(state, rows)`` (saving and continuing members).

Where torch scales by a Python float (``grad.add(param, alpha=wd)``, ``param.add_(grad, alpha=-lr)``)
the batched update uses ``addcmul`` with a per-member tensor: both are one fused multiply-add per
element on CPU, so the results are the same bits (measured, and checked by the tests).

Optional linear warm-up (``warmup_steps``) scales every group's lr as
``LambdaLR(optimizer, lambda s: min(s / warmup_steps, 1))`` stepped after every ``optimizer.step()``
does (teddykoker/grokking): the scheduler evaluates its factor at ``last_epoch = 0`` on construction,
so update k (1-based) runs at ``min((k - 1) / warmup_steps, 1)``; the first update has lr 0 (the
moments still move) and full lr is reached at update ``warmup_steps + 1``.

The update is elementwise, so it is fused: ``torch.compile`` turns the per-tensor chain of
operations into one loop (the toy engine inlines ``adamw_update`` into its compiled training step
instead, ``grokking.toy_step``). The per-member factors (``1 - lr * wd`` and ``-lr / bias_correction1``,
formed in float64 and rounded once, as torch does with its Python floats) are computed before the
loop, once per shard and once per step: formed inside it, they cost a float64 division per vector of
parameters (5-16 % of the update's time, measured at 21 members). Step-dependent values are passed as tensors and shapes
are dynamic, so neither the step count nor the number of members (which shrinks as members stop)
triggers a recompilation. The compiled update agrees with the eager one to rounding (inductor
contracts multiply-adds its own way), not bit for bit; each path is deterministic.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from grokking.ensemble import Params

Groups = dict[str, tuple[str, ...]]  # group name -> the names of its parameters
PerGroup = dict[str, torch.Tensor]  # group name -> one value per member [M]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The lr multiplier of update ``step`` (1-based): what LambdaLR(lambda s: min(s / warmup, 1))
    sets before that update, i.e. the factor at ``step - 1``. 1 without warm-up."""
    if warmup_steps <= 0:
        return 1.0
    return min((step - 1) / warmup_steps, 1.0)


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member vector [M] viewed to broadcast over a stacked tensor [M, ...]."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


def adamw_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    decays: list[torch.Tensor] | None,
    neg_step_sizes: list[torch.Tensor],
    bias_correction2_sqrt: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    l2s: list[torch.Tensor] | None = None,
) -> None:
    """One AdamW step of every member, in place. ``decays`` (``1 - lr * wd``) and ``neg_step_sizes``
    (``-lr / bias_correction1``) are each parameter's per-member factors [M] in its dtype
    (``BatchedAdamW.next_step_arguments``). With ``decays=None`` and ``l2s`` (wd [M]) it is torch's
    Adam instead: the L2 term is added to a copy of the gradient (``BatchedAdam``). A pure function,
    so a larger compiled training step can inline it."""
    for i, (param, grad, exp_avg, exp_avg_sq, neg_step_size) in enumerate(
        zip(params, grads, exp_avgs, exp_avg_sqs, neg_step_sizes)
    ):
        if decays is not None:
            param.mul_(_per_member(decays[i], param))  # decoupled weight decay: p *= 1 - lr * wd
        if l2s is not None:
            grad = torch.addcmul(grad, param, _per_member(l2s[i], param))  # grad.add(param, alpha=wd)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        # = addcdiv_(exp_avg, denom, value=-step_size): (value * exp_avg) / denom, then added
        param.add_(_per_member(neg_step_size, param) * exp_avg / denom)


def sgd_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    l2s: list[torch.Tensor],
    neg_lrs: list[torch.Tensor],
    first: torch.Tensor,
    momentum: float,
    nesterov: bool,
) -> None:
    """One SGD step (momentum, dampening 0, L2 weight decay ``l2s`` [M]) of every member, in place.
    ``first`` (a 0-dim bool) marks the first step, where torch sets the buffer to a clone of the
    gradient; a tensor, not a Python bool, so the first step does not compile a second graph."""
    for param, grad, buf, l2, neg_lr in zip(params, grads, momentum_buffers, l2s, neg_lrs):
        grad = torch.addcmul(grad, param, _per_member(l2, param))  # grad.add(param, alpha=wd)
        if momentum == 0:  # plain SGD (002's parity): torch keeps no buffer, and the step is the gradient
            param.addcmul_(grad, _per_member(neg_lr, param))
            continue
        buf.copy_(torch.where(first, grad, buf.mul(momentum).add_(grad)))
        direction = grad.add(buf, alpha=momentum) if nesterov else buf
        param.addcmul_(direction, _per_member(neg_lr, param))  # param.add_(direction, alpha=-lr)


_compiled: dict[Callable, Callable] = {}


def _fused(update: Callable) -> Callable:
    """``update`` compiled once per process, with dynamic shapes (members shrink at compaction)."""
    if update not in _compiled:
        _compiled[update] = torch.compile(update, dynamic=True)
    return _compiled[update]


class BatchedOptimizer:
    """What every batched optimizer shares: parameters ``[M, ...]`` in groups with per-member lr and
    weight decay (float64 [M] per group), a step count, per-parameter state buffers named by
    ``state_names`` (attributes holding ``{param name: [M, ...]}``), compaction, state export and an
    optional linear warm-up. Subclasses supply ``update`` and ``next_step_arguments``."""

    state_names: tuple[str, ...] = ()
    update: Callable  # the pure update function: update(params, grads, **next_step_arguments())

    def __init__(
        self, params: Params, groups: Groups, lr: PerGroup, weight_decay: PerGroup,
        compile: bool = True,
        warmup_steps: int = 0,
    ):
        self.params = params
        self.groups = groups
        self.group_of = {name: group for group, names in groups.items() for name in names}
        self.param_names = list(self.group_of)  # the order of every list passed to the update
        # Hyperparameters are kept in float64 and rounded once, as Python floats are in torch.
        self.lr = {g: v.to(torch.float64) for g, v in lr.items()}  # [M] per group
        self.weight_decay = {g: v.to(torch.float64) for g, v in weight_decay.items()}
        like = next(iter(params.values()))
        self.dtype, self.device = like.dtype, like.device  # of the per-member factors
        self.compile = compile
        self.warmup_steps = warmup_steps
        self.step_count = 0
        for name in self.state_names:
            setattr(self, name, {n: torch.zeros_like(p) for n, p in params.items()})
        self._refresh_factors()

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return the update's arguments besides params and grads."""
        raise NotImplementedError

    def _in_dtype(self, per_group: PerGroup) -> PerGroup:
        """Per-group float64 factors rounded once to the parameters' dtype and device."""
        return {g: v.to(self.device, self.dtype) for g, v in per_group.items()}

    def _by_param(self, per_group: PerGroup) -> list[torch.Tensor]:
        """Per-group values listed per parameter, in ``param_names`` order."""
        return [per_group[self.group_of[n]] for n in self.param_names]

    def _buffers(self, name: str) -> list[torch.Tensor]:
        """State buffer ``name`` listed per parameter, in ``param_names`` order."""
        return [getattr(self, name)[n] for n in self.param_names]

    def scheduled_lr(self) -> PerGroup:
        """The lr of the step being taken (``step_count`` already counted): ``self.lr`` itself once
        the warm-up is over (or without one), else ``lr * warmup_factor`` formed in float64."""
        factor = warmup_factor(self.step_count, self.warmup_steps)
        if factor == 1:
            return self.lr
        return {g: v * factor for g, v in self.lr.items()}

    def _refresh_factors(self) -> None:
        """(Re)compute the cached per-member factors: at construction and after compaction."""

    @torch.no_grad()
    def step(self, grads: Params) -> None:
        """One update of every member, fused by ``torch.compile`` unless ``compile`` is off."""
        update = _fused(type(self).update) if self.compile else type(self).update
        names = self.param_names
        update([self.params[n] for n in names], [grads[n] for n in names], **self.next_step_arguments())

    def select(self, params: Params, keep: torch.Tensor) -> None:
        """Keep only members ``keep`` (compaction); ``params`` are the already-compacted tensors."""
        self.params = params
        for name in self.state_names:
            setattr(self, name, {n: v.index_select(0, keep) for n, v in getattr(self, name).items()})
        cpu_keep = keep.to(self.lr[next(iter(self.lr))].device)
        self.lr = {g: v.index_select(0, cpu_keep) for g, v in self.lr.items()}
        self.weight_decay = {g: v.index_select(0, cpu_keep) for g, v in self.weight_decay.items()}
        self._refresh_factors()

    def set_weight_decay(self, group: str, values: torch.Tensor) -> None:
        """Change the members' weight decay of ``group`` ([M]) from the next step on: 002's
        Hypothesis 1 raises it once a member has fitted its training set."""
        self.weight_decay[group] = values.to(self.weight_decay[group])
        self._refresh_factors()

    def state(self, rows: torch.Tensor | None = None) -> dict[str, Any]:
        """Per-member state for saving (CPU copies of members ``rows``, all by default):
        ``{"step": int, <state name>: {param name: tensor}}``. For AdamW these are the keys the
        engines' end states already use (``step``, ``exp_avg``, ``exp_avg_sq``)."""
        def take(t: torch.Tensor) -> torch.Tensor:
            t = t.detach()
            return t.to("cpu", copy=True) if rows is None else t.index_select(0, rows.to(t.device)).cpu()

        return {"step": self.step_count,
                **{name: {n: take(v) for n, v in getattr(self, name).items()} for name in self.state_names}}

    def load_state(self, state: dict[str, Any], rows: torch.Tensor | None = None) -> None:
        """Continue from ``state()`` (or an engine end state): member i takes saved member
        ``rows[i]`` (all saved members in order by default)."""
        def take(t: torch.Tensor) -> torch.Tensor:
            return (t if rows is None else t.index_select(0, rows.to(t.device))).to(self.device)

        with torch.no_grad():
            for name in self.state_names:
                for n, buffer in getattr(self, name).items():
                    buffer.copy_(take(state[name][n]))
        self.step_count = int(state["step"])


class _BatchedAdamBase(BatchedOptimizer):
    """Moments, betas, eps and the step-dependent factors that Adam and AdamW share."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self, params: Params, groups: Groups, lr: PerGroup, weight_decay: PerGroup,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        compile: bool = True,
        warmup_steps: int = 0,
    ):
        super().__init__(params, groups, lr, weight_decay, compile=compile, warmup_steps=warmup_steps)
        self.betas = betas
        self.eps = eps

    def _moment_arguments(self, lr: PerGroup) -> dict[str, Any]:
        """The update's arguments common to Adam and AdamW at the current ``step_count``."""
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**self.step_count
        # -(lr / bc1) in float64, rounded once: torch's addcdiv_(value=-step_size) with a Python float
        neg_step_size = self._in_dtype({g: v / -bias_correction1 for g, v in lr.items()})
        return {
            "exp_avgs": self._buffers("exp_avg"),
            "exp_avg_sqs": self._buffers("exp_avg_sq"),
            "neg_step_sizes": self._by_param(neg_step_size),
            "bias_correction2_sqrt": torch.tensor(math.sqrt(1 - beta2**self.step_count),
                                                  dtype=self.dtype, device=self.device),
            "beta1": beta1,
            "beta2": beta2,
            "eps": self.eps,
        }


class BatchedAdamW(_BatchedAdamBase):
    """AdamW over stacked parameters ``[M, ...]`` with per-member, per-group lr and weight decay
    (betas e.g. (0.9, 0.98) as the modular-arithmetic papers use; optional warm-up)."""

    update = staticmethod(adamw_update)

    def _decays(self, lr: PerGroup) -> PerGroup:
        """``1 - lr * wd`` per group and member, formed in float64 and rounded once."""
        return self._in_dtype({g: 1 - lr[g] * self.weight_decay[g] for g in lr})

    def _refresh_factors(self) -> None:
        self.decay = self._decays(self.lr)

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return ``adamw_update``'s arguments besides params and grads (in
        ``param_names`` order): for a caller that runs the update inside its own compiled step."""
        self.step_count += 1
        lr = self.scheduled_lr()
        decay = self.decay if lr is self.lr else self._decays(lr)  # cached outside the warm-up
        return {"decays": self._by_param(decay), **self._moment_arguments(lr)}


class BatchedAdam(_BatchedAdamBase):
    """``torch.optim.Adam`` over stacked members: L2 weight decay (per member) added to the gradient."""

    update = staticmethod(adamw_update)  # with decays=None: L2 decay on the gradient

    def _refresh_factors(self) -> None:
        self.l2 = self._in_dtype(self.weight_decay)

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return ``adamw_update``'s arguments (Adam form) besides params and grads."""
        self.step_count += 1
        return {"decays": None, "l2s": self._by_param(self.l2), **self._moment_arguments(self.scheduled_lr())}


class BatchedSGD(BatchedOptimizer):
    """``torch.optim.SGD`` over stacked members: momentum (dampening 0, optionally Nesterov) and L2
    weight decay per member. The buffer is the first step's gradient, as torch initialises it."""

    state_names = ("momentum_buffer",)
    update = staticmethod(sgd_update)

    def __init__(
        self, params: Params, groups: Groups, lr: PerGroup, weight_decay: PerGroup,
        momentum: float = 0.0,
        nesterov: bool = False,
        compile: bool = True,
        warmup_steps: int = 0,
    ):
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0 (as in torch.optim.SGD)")
        super().__init__(params, groups, lr, weight_decay, compile=compile, warmup_steps=warmup_steps)
        self.momentum = momentum
        self.nesterov = nesterov

    def _refresh_factors(self) -> None:
        self.l2 = self._in_dtype(self.weight_decay)

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return ``sgd_update``'s arguments besides params and grads."""
        self.step_count += 1
        neg_lr = self._in_dtype({g: -v for g, v in self.scheduled_lr().items()})
        return {
            "momentum_buffers": self._buffers("momentum_buffer"),
            "l2s": self._by_param(self.l2),
            "neg_lrs": self._by_param(neg_lr),
            "first": torch.tensor(self.step_count == 1, device=self.device),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
        }


OPTIMIZERS: dict[str, type[BatchedOptimizer]] = {
    "adamw": BatchedAdamW, "adam": BatchedAdam, "sgd": BatchedSGD,
}


def make_optimizer(
    kind: str, params: Params, groups: Groups, lr: PerGroup, weight_decay: PerGroup, **settings: Any
) -> BatchedOptimizer:
    """The batched optimizer named ``kind`` (adamw, adam, sgd), so a shard trainer can take the
    optimizer from its config; ``settings`` are that class's keywords (betas, eps, momentum,
    nesterov, compile, warmup_steps)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[kind](params, groups, lr, weight_decay, **settings)
