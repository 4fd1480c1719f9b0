"""A plain training loop the way the report's public code runs one cell: the engine's ground truth.

The tests compare the engine with it step for step; benchmarks/engine.py times it as the baseline.

One ``nn.Module``, ``torch.optim.AdamW`` with the paper's two parameter groups, full-batch steps,
train accuracy from the pre-update output and validation accuracy after the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grokking.data import ToySplit
from grokking.models import ToyModel, build_toy_model


@dataclass
class ReferenceRun:
    model: ToyModel
    t_train: int | None
    t_val: int | None
    steps: int


def _correct(out: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, classification: bool) -> int:
    if classification:
        return int((out.argmax(-1) == y).sum())
    return int((torch.cdist(out, targets).argmin(-1) == y).sum())


def reference_run(
    study: dict, split: ToySplit, lr: float, wd: float, model_seed: int, activation: str,
    steps: int, early_stop: bool = True, dtype: torch.dtype = torch.float32,
) -> ReferenceRun:
    classification = study["objective"] == "classification"
    model = build_toy_model(study, activation, model_seed).to(dtype)
    targets = split.targets.to(dtype)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.embedding.parameters(), "lr": study["embedding_lr"],
             "weight_decay": study["embedding_wd"]},
            {"params": model.decoder.parameters(), "lr": lr, "weight_decay": wd},
        ],
        betas=(0.9, 0.999), eps=1e-8,
    )
    threshold = study["threshold"]  # an accuracy k / n counts as reached when >= threshold
    t_train = t_val = None
    step = 0
    for step in range(1, steps + 1):
        out = model(split.x_train)
        if classification:
            loss = F.cross_entropy(out, split.y_train)
        else:
            loss = F.mse_loss(out, targets[split.y_train])
        train_acc = _correct(out.detach(), split.y_train, targets, classification) / len(split.y_train)
        if t_train is None and train_acc >= threshold:
            t_train = step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val_out = model(split.x_val)
        val_acc = _correct(val_out, split.y_val, targets, classification) / len(split.y_val)
        if t_val is None and val_acc >= threshold:
            t_val = step
        if early_stop and t_train is not None and t_val is not None:
            break
    return ReferenceRun(model=model, t_train=t_train, t_val=t_val, steps=step)
