"""A plain MNIST loop, one ``nn.Module`` and ``torch.optim.AdamW`` as in the report's public code.

The engine's ground truth for the tests: same model, optimizer groups, loss, batch order and
evaluation schedule, written the obvious way (one cell, no stacking, no compaction). With
``train_accuracy: running`` the train accuracy is the public code's: correct pre-update predictions
summed over each epoch's batches, read at the evaluation step (an epoch end).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grokking.mnist import MnistData, MnistMLP, batches, build_mnist_model, pixels
from grokking.schedule import is_eval_step


@dataclass
class MnistReferenceRun:
    model: MnistMLP
    t_train: int | None
    t_val: int | None
    steps: int
    train_acc: float
    val_acc: float


@torch.no_grad()
def _accuracy(model: MnistMLP, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(-1) == y).double().mean())


def mnist_reference_run(
    study: dict, data: MnistData, lr: float, wd: float, model_seed: int, steps: int,
    activation: str = "relu", early_stop: bool = True,
) -> MnistReferenceRun:
    dtype = getattr(torch, study["dtype"])
    model = build_mnist_model(study, activation, model_seed, dtype)
    optimizer = torch.optim.AdamW(
        [{"params": model.encoder.parameters(), "lr": study["encoder_lr"]},
         {"params": model.decoder.parameters(), "lr": lr}],
        weight_decay=wd,  # common to both groups, as in the public code
    )
    x_train, y_train = pixels(data.train_images, dtype), data.train_labels
    x_val, y_val = pixels(data.val_images, dtype), data.val_labels
    order = batches(len(y_train), study["batch_size"], study["batch_seed"])
    running = study.get("train_accuracy", "subset") == "running"
    steps_per_epoch = -(-len(y_train) // study["batch_size"])
    t_train = t_val = None
    train_acc = val_acc = 0.0
    epoch_correct = last_epoch_correct = 0
    step = 0
    for step in range(1, steps + 1):
        index = next(order)
        logits = model(x_train[index])
        loss = F.mse_loss(logits, F.one_hot(y_train[index], 10).to(dtype))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        epoch_correct += int((logits.argmax(-1) == y_train[index]).sum())
        if step % steps_per_epoch == 0:
            last_epoch_correct, epoch_correct = epoch_correct, 0
        if is_eval_step(step, study["eval"]):
            train_acc = last_epoch_correct / len(y_train) if running else _accuracy(model, x_train, y_train)
            val_acc = _accuracy(model, x_val, y_val)
            if t_train is None and train_acc > study["threshold"]:
                t_train = step
            if t_val is None and val_acc > study["threshold"]:
                t_val = step
            if early_stop and t_train is not None and t_val is not None:
                break
    return MnistReferenceRun(model, t_train, t_val, step, train_acc, val_acc)
