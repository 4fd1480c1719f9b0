"""Train a shard of sparse-parity cells (paper 002) as one stacked ensemble; the clock is epochs.

The members are ``grokking.parity.ParityMLP`` modules stacked by ``grokking.stacked`` and updated by
the batched optimizer of ``grokking.optim`` (SGD with L2 weight decay by default, as the public
code), one cell's lr and weight decay per member. A member follows the trajectory of the same
module trained alone with ``torch.optim`` (tests/test_parity.py).

Epoch e = 1, 2, ... visits the member's training samples in its own order (``modular.epoch_order``:
seeded by batch_seed, the member's model seed and the epoch) in minibatches of ``batch_size`` with a
smaller last one (a DataLoader with shuffle, without drop_last); ``batch_size: 0`` is full batch.
After every ``eval_every`` epochs, and at epoch 0, the model is measured on the whole training set
(against the labels it trains on, flipped ones included) and the whole test set: accuracy, mean
loss, the parameter norm and the spectral norm of the hidden weights (002 Fig. 4). T_train and
T_val are the first such epochs at which an accuracy reaches ``threshold`` (002: 1, "memorized" and
"generalized").

Per-cell axes beside lr and wd: ``label_noise`` (Hypothesis 2: the probability that each training
label is flipped, ``parity.flipped_labels``) and ``wd_after`` (Hypothesis 1: the weight decay a
member switches to at the evaluation where it first reaches T_train, in effect from the next
epoch). ``snapshot_epochs`` keeps every member's parameters at those epochs (002 Figs. 2-3 read
them). A continuation replays the batch order and switches the weight decay of members whose saved
T_train is set, so it equals one uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pandas as pd
import torch

from grokking.grid import axis_column
from grokking.modular import epoch_order
from grokking.optim import make_optimizer
from grokking.parity import ParitySplit, build_model, correct, flipped_labels, sample_losses
from grokking.stacked import StackedModel, group_parameters
from grokking.trainer import (EngineSettings, ShardResult, ShardTrainer, denormals_flushed, new_members,
                              with_final_losses)

CURVES = ("train_acc", "val_acc", "train_loss", "val_loss", "param_norm", "spectral_norm")
PROGRESS_EVERY_EPOCHS = 500  # epochs between progress lines in a training job's log

log = logging.getLogger(__name__)


def needed(threshold: float, n: int) -> int:
    """Smallest number of right answers out of n whose accuracy k / n reaches the threshold."""
    return math.ceil(threshold * n - 1e-9)


class ParityShardTrainer(ShardTrainer):
    """Everything needed to train one shard of a parity study; ``run`` trains it."""

    def __init__(self, study: dict[str, Any], cells: pd.DataFrame, splits: dict[int, ParitySplit],
                 settings: EngineSettings, resume: dict[str, Any] | None = None):
        super().__init__(study, cells, settings)
        missing = {int(s) for s in cells["data_seed"]} - set(splits)
        if missing:
            raise ValueError(f"cells want data seeds {sorted(missing)}, the dataset has {sorted(splits)}")
        first = splits[int(cells["data_seed"].iloc[0])]
        self.n_train, self.n_val = len(first.y_train), len(first.y_test)
        self.batch = min(study["batch_size"] or self.n_train, self.n_train)  # larger: full batch
        self.steps_per_epoch = -(-self.n_train // self.batch)
        self.need_train = needed(study["threshold"], self.n_train)
        self.need_val = needed(study["threshold"], self.n_val)
        self._build(splits, resume)

    # ----------------------------------------------------------------------------- set-up
    def _build(self, splits: dict[int, ParitySplit], resume: dict[str, Any] | None) -> None:
        cells, dev, M, study = self.cells, self.device, len(self.cells), self.study
        members = [build_model(study["n"], study["width"], int(seed), study["readout_bias"])
                   for seed in cells["model_seed"]]
        self.model = StackedModel(members, dtype=self.dtype, device=dev)
        self.params = self.model.params
        f64 = dict(dtype=torch.float64, device=dev)
        optimizer = study["optimizer"]
        if optimizer["name"] == "sgd":
            extra = dict(momentum=optimizer["momentum"], nesterov=optimizer["nesterov"])
        else:
            extra = dict(betas=tuple(optimizer["betas"]), eps=optimizer["eps"])
        self.optimizer = make_optimizer(
            optimizer["name"], self.params, group_parameters(self.params, {"all": ("",)}),
            {"all": torch.tensor(cells["lr"].to_numpy(), **f64)},
            {"all": torch.tensor(cells["wd"].to_numpy(), **f64)},
            compile=False, warmup_steps=0, **extra)  # members are small: compiling would cost more than it saves
        noise = axis_column(cells, "label_noise")
        data = [splits[int(s)] for s in cells["data_seed"]]
        y_train = [flipped_labels(d.y_train, float(p), int(ds), int(ms))
                   for d, p, ds, ms in zip(data, noise, cells["data_seed"], cells["model_seed"])]
        as_dtype = dict(dtype=self.dtype, device=dev)
        self.members = new_members(
            M, dev,
            x_train=torch.stack([d.x_train for d in data]).to(**as_dtype),
            y_train=torch.stack(y_train).to(**as_dtype),
            x_val=torch.stack([d.x_test for d in data]).to(**as_dtype),
            y_val=torch.stack([d.y_test for d in data]).to(**as_dtype),
            model_seed=torch.tensor(cells["model_seed"].to_numpy(), device=dev),
            wd=torch.tensor(cells["wd"].to_numpy(), **f64),
            wd_after=torch.tensor(axis_column(cells, "wd_after").to_numpy(), **f64))
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}  # epoch -> {name: [cells, ...]}
        if resume is not None:
            self.load_resume(resume)
            self._switch_weight_decay()  # members that had fitted their training set before the save
        self.start_record()
        every = study["eval_every"]
        first = self.start_step + (every if self.start_step else 0)  # epoch 0 is measured on a fresh run
        epochs = list(range(first, study["budget"] + 1, every))
        self.history_epochs = torch.tensor(epochs, dtype=torch.long)
        self.history_row = {e: i for i, e in enumerate(epochs)}
        self.history = {key: torch.full((len(epochs), M), float("nan")) for key in CURVES}

    def load_resume(self, state: dict[str, Any]) -> None:
        """As every task's, and the batch order must be the one the saved run used."""
        if state.get("batch_seed") != self.study["batch_seed"]:
            raise ValueError(f"resume state used batch_seed {state.get('batch_seed')}, "
                             f"the study {self.study['batch_seed']}")
        super().load_resume(state)

    def _switch_weight_decay(self) -> None:
        """Members that have reached T_train train on with their cell's ``wd_after`` (where it has one)."""
        m = self.members
        switched = (m.t_train >= 0) & ~torch.isnan(m.wd_after)
        self.optimizer.set_weight_decay("all", torch.where(switched, m.wd_after, m.wd))

    # ----------------------------------------------------------------------------- training
    def _member_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sample_losses(output, y, self.study["loss"]).mean()

    @torch.no_grad()
    def _measure(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[M] right answers and mean loss of every member over all its rows of x [M, rows, n]."""
        output = self.model(x, in_dims=0)
        return correct(output, y).sum(1), sample_losses(output, y, self.study["loss"]).double().mean(1)

    @torch.no_grad()
    def _evaluate(self, epoch: int) -> None:
        """Accuracies, losses and norms after ``epoch`` epochs; thresholds; weight-decay switches."""
        m = self.members
        train_correct, train_loss = self._measure(m.x_train, m.y_train)
        val_correct, val_loss = self._measure(m.x_val, m.y_val)
        alive = m.diverged_at < 0
        m.train_correct = torch.where(alive, train_correct, m.train_correct)
        m.val_correct = torch.where(alive, val_correct, m.val_correct)
        fitted = alive & (m.t_train < 0) & (train_correct >= self.need_train)
        m.t_train = torch.where(fitted, epoch, m.t_train)
        m.t_val = torch.where(alive & (m.t_val < 0) & (val_correct >= self.need_val), epoch, m.t_val)
        if bool((fitted & ~torch.isnan(m.wd_after)).any()):
            self._switch_weight_decay()
        p = self.model.params
        values = {"train_acc": train_correct / self.n_train, "val_acc": val_correct / self.n_val,
                  "train_loss": train_loss, "val_loss": val_loss,
                  "param_norm": torch.sqrt(sum(v.detach().double().pow(2).flatten(1).sum(1) for v in p.values())),
                  "spectral_norm": torch.linalg.matrix_norm(p["hidden.weight"].detach().double(), ord=2)}
        row, ids = self.history_row[epoch], m.ids.cpu()
        for key, value in values.items():
            self.history[key][row, ids] = value.float().cpu()
        if epoch in self.study["snapshot_epochs"]:
            snapshot = self.snapshots.setdefault(epoch, {
                name: torch.full((len(self.cells), *v.shape[1:]), float("nan")) for name, v in p.items()})
            for name, value in p.items():
                snapshot[name][ids] = value.detach().float().cpu()

    def _train_epoch(self, epoch: int) -> None:
        """One pass over every member's training samples in its own order of ``epoch`` (1-based)."""
        m, b = self.members, self.batch
        if b >= self.n_train:
            order = torch.arange(self.n_train, device=self.device).expand(len(m), -1)
        else:
            order = torch.stack([epoch_order(self.n_train, self.study["batch_seed"], int(seed), epoch - 1)
                                 for seed in m.model_seed.cpu()]).to(self.device)
        for position in range(self.steps_per_epoch):
            rows = order[:, position * b:(position + 1) * b]
            x = m.x_train.gather(1, rows.unsqueeze(-1).expand(-1, -1, m.x_train.shape[-1]))
            y = m.y_train.gather(1, rows)
            _, losses, grads = self.model.value_and_gradients(self._member_loss, (x,), (y,), 0, 0)
            m.diverged_at = torch.where((m.diverged_at < 0) & ~torch.isfinite(losses), epoch, m.diverged_at)
            self.optimizer.step(grads)

    def select_params(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.select(keep)
        return self.model.params

    def run(self) -> ShardResult:
        """Train to the budget with denormal floats flushed to zero: a weight decay that shrinks a
        member's weights towards 0 (Hypothesis 1 up to 1.0) would otherwise fill them with subnormal
        numbers, many times slower on CPUs, and slow the whole shard."""
        with denormals_flushed():
            return self._run()

    def _run(self) -> ShardResult:
        study, budget = self.study, self.study["budget"]
        if self.start_step >= budget:
            raise ValueError(f"resume state is at epoch {self.start_step}, not below budget {budget}")
        started, cell_epochs, epoch = time.perf_counter(), 0, self.start_step
        if self.start_step == 0:
            self._evaluate(0)
        for epoch in range(self.start_step + 1, budget + 1):
            self._train_epoch(epoch)
            cell_epochs += len(self.members)
            if epoch in self.history_row:
                self._evaluate(epoch)
            if epoch % PROGRESS_EVERY_EPOCHS == 0:
                log.info("epoch %d: %d of %d cells training, %.0f cell-epochs/s", epoch, len(self.members),
                         len(self.cells), cell_epochs / (time.perf_counter() - started))
            if epoch == budget:
                break
            stop = self.stopping(study["stop_early"])
            if bool(stop.any()):
                self.record(stop.nonzero().squeeze(1), epoch)
                self.compact((~stop).nonzero().squeeze(1))  # the optimizer keeps the members' current weight decay
                if not len(self.members):
                    break
        self.end_step = epoch
        if len(self.members):
            self.record(torch.arange(len(self.members), device=self.device), epoch)
        metrics = with_final_losses(self.metrics(self.study["budget"]), self.history)
        return ShardResult(metrics=metrics, history=self._history(), end_state=self.budget_end_state(self.end_step))

    # ----------------------------------------------------------------------------- results
    def _history(self) -> dict[str, dict[str, Any]]:
        """Per cell: evaluation epochs (as ``step``), every recorded curve, and its snapshots."""
        history: dict[str, dict[str, Any]] = {}
        epochs = sorted(self.snapshots)
        for i, cid in enumerate(self.cells["cell_id"]):
            rows = (~torch.isnan(self.history["train_acc"][:, i])).nonzero().squeeze(1)
            if not len(rows):
                continue
            history[cid] = {"step": self.history_epochs[rows].to(torch.int32),
                            **{key: values[rows, i] for key, values in self.history.items()}}
            taken = [e for e in epochs if not torch.isnan(self.snapshots[e]["hidden.weight"][i]).any()]
            if taken:
                history[cid]["snapshots"] = {
                    "epoch": torch.tensor(taken, dtype=torch.int32),
                    **{name: torch.stack([self.snapshots[e][name][i] for e in taken]) for name in self.params}}
        return history


def train_parity_shard(study: dict[str, Any], cells: pd.DataFrame, splits: dict[int, ParitySplit],
                       settings: EngineSettings = EngineSettings(),
                       resume: dict[str, Any] | None = None) -> ShardResult:
    """Train the given cells of a parity study together (see the module docstring)."""
    return ParityShardTrainer(study, cells, splits, settings, resume).run()
