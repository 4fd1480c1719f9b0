"""What an MNIST cell may change one at a time (paper 003 section 4, Table 3; Omnigrok's MNIST runs).

Each option is per member of a shard, so the rows of Table 3 that share their data and batches train
as one stacked ensemble, and a member's trajectory never depends on the other members:

- ``init_scale`` (grid axis; else the study's key): every initial parameter times this (Omnigrok's
  alpha); built in ``grokking.tasks.mnist_trainer``.
- ``loss`` (grid axis; default ``mse``): ``F.mse_loss(logits, one_hot)`` or
  ``F.cross_entropy(logits, labels)``, both means over the batch (``member_loss``).
- ``optimizer`` (grid axis; default ``adamw``): ``torch.optim.AdamW``, ``Adam`` (L2 weight decay
  added to the gradient) or ``SGD`` (no momentum, L2 weight decay), each with the cell's lr and
  weight decay and torch's defaults otherwise (betas 0.9/0.999, eps 1e-8), as Omnigrok's notebook
  builds them: ``optimizer_dict[name](params, lr=lr, weight_decay=wd)`` (``MixedOptimizer``).
- ``augment`` (grid axis; default 0): sigma of 003's augmentation, ``RandomRotation(30 sigma)`` then
  ``GaussianBlur(3, sigma / 2)`` (torchvision.transforms.v2), applied to the training batch of every
  step; sigma 0 is no augmentation (``Augmentation``).
- ``constrain_norm`` (study key): after every update, every parameter of a member is multiplied by
  sqrt(|w_0|^2 / |w|^2), so the member's L2 norm stays the norm it had at initialization (Omnigrok's
  landscape notebook, ``rescale(mlp, torch.sqrt(L2_ / L2_new))``; ``NormConstraint``).

The augmentation is seeded per step, not per member: at step s every augmented member runs the
transforms' own random draws after ``torch.manual_seed(step_seed(batch_seed, s))`` (inside
``torch.random.fork_rng``, so the global generator is left alone). A member's angle is then the same
uniform draw scaled by its own 30 sigma, whichever members share its shard, and a continuation needs
no generator state. All members see the same batch indices (``grokking.mnist.batches``).

Nothing here imports torchvision at import time; torch is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from grokking.ensemble import Params
from grokking.optim import Groups, PerGroup, _BatchedAdamBase, adamw_update

LOSSES = ("mse", "cross_entropy")
OPTIMIZER_NAMES = ("adamw", "adam", "sgd")
DEFAULTS = {"augment": 0.0, "loss": "mse", "optimizer": "adamw"}  # a grid without the axis


def cell_settings(study: dict[str, Any], cells: pd.DataFrame) -> pd.DataFrame:
    """Each cell's init scale, augmentation, loss and optimizer: the grid's value where the grid
    has the axis, else the study's ``init_scale`` and the defaults above."""
    defaults = {"init_scale": float(study["init_scale"]), **DEFAULTS}
    return pd.DataFrame({name: cells[name] if name in cells else pd.Series(value, index=cells.index)
                         for name, value in defaults.items()})


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member vector [M] viewed to broadcast over a stacked tensor [M, ...]."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


# ----------------------------------------------------------------------------- losses
def member_loss(out: torch.Tensor, one_hot: torch.Tensor, labels: torch.Tensor,
                cross_entropy: torch.Tensor | None) -> torch.Tensor:
    """Each member's loss [M] from logits ``out`` [M, n, 10]: MSE to ``one_hot`` [n, 10] (mean over
    n x 10, as ``F.mse_loss``), or cross-entropy to ``labels`` [n] (mean over n) where the bool mask
    ``cross_entropy`` [M] says so. ``None``: every member uses MSE, computed alone (the report's path).
    Only the losses some member uses are computed."""
    if cross_entropy is None:
        return (out - one_hot).pow(2).mean((1, 2))
    # log_softmax over the last dimension and means over each member's row: every member's numbers
    # come out the same whatever the shard's size (F.cross_entropy on [M, 10, n] does not: its class
    # dimension is strided, and its kernel's order then depends on M)
    picked = torch.log_softmax(out, -1).gather(-1, labels.expand(out.shape[0], -1).unsqueeze(-1))
    ce = -picked.squeeze(-1).mean(1)
    if bool(cross_entropy.all()):
        return ce
    return torch.where(cross_entropy, ce, (out - one_hot).pow(2).mean((1, 2)))


# ----------------------------------------------------------------------------- optimizers
def mixed_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    decays: list[torch.Tensor],
    l2s: list[torch.Tensor],
    neg_step_sizes: list[torch.Tensor],
    bias_correction2_sqrt: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    neg_lrs: list[torch.Tensor],
    sgd: torch.Tensor,
) -> None:
    """One step of members that use AdamW, Adam or plain SGD, in place.

    Adam and AdamW are one update (``grokking.optim.adamw_update``) with both factors per member:
    AdamW members decay decoupled (``decays`` = 1 - lr wd, ``l2s`` = 0), Adam members add wd p to the
    gradient (``decays`` = 1, ``l2s`` = wd); a factor of 1 or a term of 0 leaves the other path's
    numbers unchanged. SGD members (mask ``sgd`` [M]) take ``p - lr (g + wd p)``, torch's SGD
    without momentum, formed from the parameters before the Adam update; their moments move but are
    never read."""
    sgd_steps = [param.addcmul(torch.addcmul(grad, param, _per_member(l2, param)), _per_member(neg_lr, param))
                 for param, grad, l2, neg_lr in zip(params, grads, l2s, neg_lrs)]
    adamw_update(params, grads, exp_avgs, exp_avg_sqs, decays, neg_step_sizes, bias_correction2_sqrt,
                 beta1, beta2, eps, l2s)
    for param, sgd_step in zip(params, sgd_steps):
        param.copy_(torch.where(_per_member(sgd, param), sgd_step, param))


class MixedOptimizer(_BatchedAdamBase):
    """torch's AdamW, Adam and SGD (momentum 0) over stacked members, chosen per member by name
    (``kinds``, one of ``OPTIMIZER_NAMES`` per member), with per-member, per-group lr and weight
    decay. State: Adam's two moments for every member (continuations save and load them). The Adam
    arithmetic (bias corrections, step sizes) is ``BatchedAdamW``'s; ``step`` compiles the update
    once per process as it does."""

    update = staticmethod(mixed_update)

    def __init__(self, params: Params, groups: Groups, lr: PerGroup, weight_decay: PerGroup, kinds: list[str],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, compile: bool = True):
        unknown = sorted(set(kinds) - set(OPTIMIZER_NAMES))
        if unknown:
            raise ValueError(f"unknown optimizers {unknown}; known: {', '.join(OPTIMIZER_NAMES)}")
        self.kind = torch.tensor([OPTIMIZER_NAMES.index(k) for k in kinds])  # [M], before the factors
        super().__init__(params, groups, lr, weight_decay, betas=betas, eps=eps, compile=compile)

    def _refresh_factors(self) -> None:
        """Per group and member: the decoupled decay (AdamW), the L2 term (Adam, SGD) and -lr, each
        formed in float64 and rounded once (x 1.0 and x 0.0 are exact)."""
        adamw = {g: (self.kind == 0).to(v) for g, v in self.lr.items()}
        self.decay = self._in_dtype({g: 1 - self.lr[g] * self.weight_decay[g] * adamw[g] for g in self.lr})
        self.l2 = self._in_dtype({g: self.weight_decay[g] * (1 - adamw[g]) for g in self.lr})
        self.neg_lr = self._in_dtype({g: -v for g, v in self.lr.items()})
        self.sgd = (self.kind == 2).to(self.device)

    def next_step_arguments(self) -> dict[str, Any]:
        """Count one step and return ``mixed_update``'s arguments besides params and grads."""
        self.step_count += 1
        return {"decays": self._by_param(self.decay), "l2s": self._by_param(self.l2),
                "neg_lrs": self._by_param(self.neg_lr), "sgd": self.sgd, **self._moment_arguments(self.lr)}

    def select(self, params: Params, keep: torch.Tensor) -> None:
        self.kind = self.kind.index_select(0, keep.cpu())
        super().select(params, keep)


# ----------------------------------------------------------------------------- augmentation
def step_seed(seed: int, step: int) -> int:
    """The torch seed of step ``step``'s augmentation draws: numpy's SeedSequence mixes both, so
    neighbouring steps and seeds give unrelated streams (torch keeps only 32 bits of a seed)."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0])


class Augmentation:
    """003's augmentation of strength sigma: ``RandomRotation(30 sigma)`` (nearest, fill 0) then
    ``GaussianBlur(kernel 3, sigma / 2)``, torchvision.transforms.v2 applied to a whole batch (one
    angle per batch and step), its random draws seeded by (seed, step)."""

    def __init__(self, sigma: float, seed: int):
        from torchvision.transforms import v2

        if sigma <= 0:
            raise ValueError(f"augmentation strength {sigma} is not > 0 (0 means no augmentation)")
        self.sigma, self.seed = float(sigma), int(seed)
        self.transform = v2.Compose([v2.RandomRotation(30.0 * sigma), v2.GaussianBlur(3, sigma / 2)])

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """[n, 784] pixels in [0, 1] -> the same images transformed, [n, 784]."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, step))
            out = self.transform(images.reshape(-1, 1, 28, 28))
        return out.reshape(images.shape)


class MemberAugmentations:
    """Every member's augmentation (sigma [M], 0 = none); ``inputs`` builds the members' batch."""

    def __init__(self, sigmas: list[float], seed: int):
        self.by_sigma = {s: Augmentation(s, seed) for s in sorted(set(sigmas)) if s > 0}

    def __bool__(self) -> bool:
        return bool(self.by_sigma)

    def inputs(self, x: torch.Tensor, sigmas: list[float], step: int) -> torch.Tensor:
        """The batch ``x`` [n, 784] as each member of ``sigmas`` sees it: [M, n, 784]. Members of
        one sigma share one transformed batch; without augmentation a broadcast view, no copy."""
        if not any(s > 0 for s in sigmas):
            return x.expand(len(sigmas), -1, -1)
        seen = {0.0: x, **{s: aug(x, step) for s, aug in self.by_sigma.items() if s in sigmas}}
        return torch.stack([seen[s] for s in sigmas])


# ----------------------------------------------------------------------------- constrained norm
def squared_norms(params: Params, names: list[str]) -> torch.Tensor:
    """Each member's squared L2 norm over all parameters [M], summed parameter by parameter."""
    total = None
    for name in names:
        p = params[name]
        sq = p.pow(2).sum(tuple(range(1, p.dim())))
        total = sq if total is None else total + sq
    return total


class NormConstraint:
    """Holds each member's parameter norm at its initial value: after every update, every
    parameter times sqrt(|w_0|^2 / |w|^2) (Omnigrok's constrained optimization)."""

    def __init__(self, params: Params, names: list[str]):
        self.names = names
        self.target = squared_norms(params, names).detach().clone()  # [M] |w_0|^2

    @torch.no_grad()
    def apply(self, params: Params) -> None:
        factor = torch.sqrt(self.target / squared_norms(params, self.names))
        for name in self.names:
            params[name].mul_(_per_member(factor, params[name]))

    def select(self, keep: torch.Tensor) -> None:
        self.target = self.target.index_select(0, keep)
