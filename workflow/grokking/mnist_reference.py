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


# ----------------------------------------------------------------------------- Omnigrok's loop
@dataclass
class OmnigrokReferenceRun:
    model: torch.nn.Sequential  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    t_train: int | None
    t_val: int | None
    train_acc: float
    val_acc: float
    history: dict[str, list[float]]  # step, train/val accuracy and loss, parameter norm


def omnigrok_reference_run(
    study: dict, data: MnistData, lr: float, wd: float, steps: int, model_seed: int = 0,
    init_scale: float | None = None, loss: str = "mse", optimizer: str = "adamw", augment: float = 0.0,
) -> OmnigrokReferenceRun:
    """Omnigrok's MNIST notebooks written plainly, for one cell: ``nn.Sequential`` MLP scaled by
    ``init_scale`` after its default init, one ``torch.optim`` optimizer over all parameters
    (``optimizer_dict[name](params, lr=lr, weight_decay=wd)``: the engine's encoder lr must equal
    ``lr``), ``nn.MSELoss`` to one-hot targets or ``nn.CrossEntropyLoss``, optionally 003's
    augmentation as torchvision transforms on each batch (the global generator seeded per step, as
    the engine seeds its own), and with ``constrain_norm`` the landscape notebook's
    ``rescale(mlp, sqrt(L2_ / L2_new))`` after every step. The batch order and the evaluation
    schedule are the engine's; no early stopping."""
    from torch import nn
    from torchvision.transforms import v2

    from grokking.data import seeded
    from grokking.mnist_ablations import step_seed

    dtype = getattr(torch, study["dtype"])
    hidden = study["hidden"]
    with seeded(int(model_seed)):
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden, dtype=dtype), nn.ReLU(),
                            nn.Linear(hidden, hidden, dtype=dtype), nn.ReLU(), nn.Linear(hidden, 10, dtype=dtype))
    with torch.no_grad():
        for p in mlp.parameters():
            p.data = (study["init_scale"] if init_scale is None else init_scale) * p.data
    L2 = lambda: sum(torch.sum(p**2) for p in mlp.parameters())  # noqa: E731 (the notebook's L2)
    L2_ = L2().detach()
    make = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    opt = make(mlp.parameters(), lr=lr, weight_decay=wd)
    loss_fn = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    target = (lambda y: torch.eye(10, dtype=dtype)[y]) if loss == "mse" else (lambda y: y)
    transform = (v2.Compose([v2.RandomRotation(30.0 * augment), v2.GaussianBlur(3, augment / 2)])
                 if augment > 0 else None)
    x_train, y_train = pixels(data.train_images, dtype), data.train_labels
    x_val, y_val = pixels(data.val_images, dtype), data.val_labels
    order = batches(len(y_train), study["batch_size"], study["batch_seed"])
    history: dict[str, list[float]] = {k: [] for k in ("step", "train_acc", "val_acc", "train_loss", "val_loss",
                                                       "param_norm")}
    t_train = t_val = None
    for step in range(1, steps + 1):
        index = next(order)
        x = x_train[index]
        if transform is not None:
            torch.manual_seed(step_seed(study["batch_seed"], step))
            x = transform(x.reshape(-1, 1, 28, 28)).reshape(-1, 784)
        opt.zero_grad()
        loss_fn(mlp(x), target(y_train[index])).backward()
        opt.step()
        if study["constrain_norm"]:
            with torch.no_grad():
                factor = torch.sqrt(L2_ / L2())
                for p in mlp.parameters():
                    p.data = factor * p.data
        if is_eval_step(step, study["eval"]):
            with torch.no_grad():
                for split, x_all, y_all in (("train", x_train, y_train), ("val", x_val, y_val)):
                    out = mlp(x_all)
                    history[f"{split}_acc"].append(float((out.argmax(-1) == y_all).double().mean()))
                    history[f"{split}_loss"].append(float(loss_fn(out, target(y_all))))
                history["param_norm"].append(float(L2().sqrt()))
            history["step"].append(step)
            if t_train is None and history["train_acc"][-1] > study["threshold"]:
                t_train = step
            if t_val is None and history["val_acc"][-1] > study["threshold"]:
                t_val = step
    return OmnigrokReferenceRun(mlp, t_train, t_val, history["train_acc"][-1], history["val_acc"][-1], history)
