"""One training step of a toy ensemble as one pure function, compiled into one graph.

A step is: forward on the training and validation rows together (the model after ``step - 1``
updates), loss and accuracies, the threshold bookkeeping of DESIGN section 5, the backward pass
written out (``ensemble.backward``, on the training rows only) and the AdamW update. In eager
PyTorch that is about a hundred small operations, each a pass over memory and a trip through the
dispatcher; for the toy model's 55 x 200 activations that overhead costs as much as the matrix
products. Compiled (``torch.compile``, dynamic shapes, so members leaving never recompile), the
elementwise work fuses into a handful of loops around the nine batched matrix products.

Everything that changes between steps is a tensor (the step number, the bias corrections), and
everything that is fixed for a shard is a plain value the compiled graph is specialised on.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from grokking import ensemble
from grokking.optim import adamw_update

Results = tuple[torch.Tensor, ...]  # t_train, t_val, diverged_at, train_correct, val_correct: [M] each


def toy_loss(out: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, n_train: int,
             classification: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-member mean loss over the first ``n_train`` rows, its gradient w.r.t. those rows of
    ``out`` (for the summed loss), and per-row correctness of every row.

    Classification: cross-entropy, prediction = argmax. Regression: MSE to the label's target
    vector, prediction = nearest target vector.
    """
    train_out, train_labels = out[:, :n_train], labels[:, :n_train]
    if classification:
        log_p = torch.log_softmax(train_out, -1)
        loss = -log_p.gather(-1, train_labels[..., None]).squeeze(-1).mean(1)
        one_hot = F.one_hot(train_labels, out.shape[-1]).to(out.dtype)
        grad_out = (log_p.exp() - one_hot) / n_train
        predictions = out.argmax(-1)
    else:
        wanted = torch.gather(targets, 1, train_labels[..., None].expand(-1, -1, targets.shape[-1]))
        difference = train_out - wanted
        loss = difference.pow(2).mean((1, 2))
        grad_out = difference * (2 / (n_train * targets.shape[-1]))
        predictions = torch.cdist(out, targets).argmin(-1)
    return loss, grad_out, predictions == labels


def measure(results: Results, step: torch.Tensor, loss: torch.Tensor, correct: torch.Tensor,
            n_train: int, need_train: int, need_val: int) -> Results:
    """Thresholds and divergence after the forward of training step ``step`` (a 0-d tensor).

    That forward gives the train accuracy of step ``step`` (pre-update output) and the validation
    accuracy of step ``step - 1`` (the model after that many updates); the reference never
    evaluates the untrained model, so validation starts at step 2's forward. A member whose loss is
    NaN/Inf is marked diverged at ``step`` and its record freezes.
    """
    t_train, t_val, diverged_at, train_correct, val_correct = results
    diverged_at = torch.where((diverged_at < 0) & ~torch.isfinite(loss), step, diverged_at)
    alive = diverged_at < 0
    now_train = correct[:, :n_train].sum(1)
    now_val = correct[:, n_train:].sum(1)
    train_correct = torch.where(alive, now_train, train_correct)
    t_train = torch.where(alive & (t_train < 0) & (now_train >= need_train), step, t_train)
    validated = alive & (step >= 2)
    val_correct = torch.where(validated, now_val, val_correct)
    t_val = torch.where(validated & (t_val < 0) & (now_val >= need_val), step - 1, t_val)
    return t_train, t_val, diverged_at, train_correct, val_correct


def toy_train_step(
    arch: ensemble.Architecture,
    classification: bool,
    n_train: int,
    need_train: int,
    need_val: int,
    params: ensemble.Params,
    adamw: dict[str, Any],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    results: Results,
    step: torch.Tensor,
) -> Results:
    """Training step ``step`` of every member, in place on ``params`` and the AdamW state in
    ``adamw`` (``BatchedAdamW.next_step_arguments``); returns the updated results."""
    activations = ensemble.forward_with_activations(arch, params, inputs)
    loss, grad_out, correct = toy_loss(activations[-1], labels, targets, n_train, classification)
    results = measure(results, step, loss, correct, n_train, need_train, need_val)
    grads = ensemble.backward(arch, params, activations, grad_out, n_train)
    names = arch.param_names  # the order of BatchedAdamW.param_names
    adamw_update([params[n] for n in names], [grads[n] for n in names], **adamw)
    return results


_compiled_step: Callable | None = None


def train_step_function(compile: bool) -> Callable:
    """``toy_train_step``, compiled once per process when asked (dynamic shapes)."""
    global _compiled_step
    if not compile:
        return toy_train_step
    if _compiled_step is None:
        _compiled_step = torch.compile(toy_train_step, dynamic=True)
    return _compiled_step
