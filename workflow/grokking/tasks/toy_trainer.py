"""Train a shard of toy-model cells as one vectorized ensemble.

Semantics follow the report's public code (DESIGN section 5). Step i = 1, 2, ...: forward on the
training set, loss, backward, AdamW update; the train accuracy of step i comes from that pre-update
output and the validation accuracy of step i from the model after the update. T_train and T_val are
the first steps at which each reaches the threshold; a cell stops when both are reached.

Evaluation is folded into the training forward: iteration i runs the model after s = i - 1 updates on
train and validation rows together, which gives the train accuracy of step i and the validation
accuracy of step s at the cost of one forward. A last forward after the final update closes the run.
A step (forward, bookkeeping, backward, AdamW) is one compiled function: ``grokking.toy_step``.

Members that have reached both thresholds or whose loss became NaN/Inf are removed from the stacked
tensors every ``check_every`` steps (compaction), so the cost follows the steps cells really need.
Results never depend on ``check_every``, on the shard's other members or on their number.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import pandas as pd
import torch

from grokking import ensemble
from grokking.data import ToySplit, toy_dataset
from grokking.models import build_toy_model
from grokking.optim import BatchedAdamW
from grokking.toy_step import measure, toy_loss, train_step_function
from grokking.trainer import PROGRESS_EVERY, EngineSettings, ShardResult, ShardTrainer, new_members

log = logging.getLogger(__name__)


def count_needed(threshold: float, n: int) -> int:
    """Smallest number of correct answers out of n whose accuracy k / n is >= threshold."""
    return next(k for k in range(n + 1) if k / n >= threshold)


class ToyShardTrainer(ShardTrainer):
    """Everything needed to train one shard of a toy study; ``run`` does the training."""

    def __init__(
        self,
        study: dict[str, Any],
        cells: pd.DataFrame,
        settings: EngineSettings,
        resume: dict[str, Any] | None = None,
        splits: dict[int, ToySplit] | None = None,
    ):
        super().__init__(study, cells, settings)
        self.arch = ensemble.toy_architecture(self.activation)
        self.classification = study["objective"] == "classification"
        if splits is None:
            splits = toy_dataset({**study, "data_seeds": sorted(self.cells["data_seed"].unique())})
        self.n_train = len(next(iter(splits.values())).y_train)
        self.n_val = len(next(iter(splits.values())).y_val)
        self.need_train = count_needed(study["threshold"], self.n_train)
        self.need_val = count_needed(study["threshold"], self.n_val)
        self._build(splits, resume)

    # ----------------------------------------------------------------------------- set-up
    def _build(self, splits: dict[int, ToySplit], resume: dict[str, Any] | None) -> None:
        cells, dev, M = self.cells, self.device, len(self.cells)
        p = self.study["p"]
        member_split = [splits[int(s)] for s in cells["data_seed"]]
        pairs = torch.stack([torch.cat([s.x_train, s.x_val]) for s in member_split])
        labels = torch.stack([torch.cat([s.y_train, s.y_val]) for s in member_split])
        if self.classification:
            targets = torch.zeros(M, 0, 0)
        else:
            targets = torch.stack([s.targets for s in member_split])
        self.members = new_members(
            M, dev,
            inputs=ensemble.one_hot_pairs(pairs, p, self.dtype).to(dev),  # [M, n_train + n_val, p] one-hot pairs
            labels=labels.to(dev),  # [M, n_train + n_val]
            targets=targets.to(device=dev, dtype=self.dtype),  # [M, classes, dim] (empty: classification)
        )
        models: dict[tuple[str, int], torch.nn.Module] = {}
        for act, seed in zip(cells["activation"], cells["model_seed"]):
            if (act, int(seed)) not in models:
                models[(act, int(seed))] = build_toy_model(self.study, act, int(seed))
        params = ensemble.stack_toy_models(
            [models[(a, int(s))] for a, s in zip(cells["activation"], cells["model_seed"])],
            self.dtype,
            dev,
        )
        f64 = dict(dtype=torch.float64, device=dev)
        lr = {
            "embedding": torch.full((M,), self.study["embedding_lr"], **f64),
            "decoder": torch.tensor(cells["lr"].to_numpy(), **f64),
        }
        wd = {
            "embedding": torch.full((M,), self.study["embedding_wd"], **f64),
            "decoder": torch.tensor(cells["wd"].to_numpy(), **f64),
        }
        self.params = params  # gradients are computed explicitly (ensemble.backward), not by autograd
        self.optimizer = BatchedAdamW(
            self.params, self.arch.groups, lr, wd, compile=self.settings.compile
        )
        if resume is not None:
            self.load_resume(resume)
        self.start_record()
        self._allocate_history(M)

    def _allocate_history(self, M: int) -> None:
        """Preallocate the snapshot buffers (one row per snapshot time, one column per member).

        Thousands of small long-lived tensors, interleaved with the step's large temporaries,
        fragment the C heap until a 1e5-step job holds gigabytes; fixed buffers keep memory flat.
        """
        every, budget, start = self.study["log_every"], self.study["budget"], self.start_step
        first = -(-start // every) * every if every else budget
        if start and first == start:  # a continuation's start was saved by the run before
            first += every
        times = list(range(first, budget, every)) if every else []
        self.snapshot_steps = torch.tensor(times + [budget], dtype=torch.long)
        self._snapshot_first, R = first, len(times) + 1
        dev, width = self.device, self.params["embedding"][0].numel()
        self.history_embedding = torch.zeros(R, M, width, dtype=torch.float32, device=dev)
        self.history_train = torch.zeros(R, M, dtype=torch.int32, device=dev)
        self.history_val = torch.zeros(R, M, dtype=torch.int32, device=dev)
        self.history_taken = torch.zeros(R, M, dtype=torch.bool, device=dev)

    # ----------------------------------------------------------------------------- training
    def _is_snapshot_time(self, updates: int) -> bool:
        every = self.study["log_every"]
        return bool(every) and updates >= self._snapshot_first and updates % every == 0

    def _snapshot(self, updates: int, embedding: torch.Tensor, final: bool = False) -> None:
        """History row of the model after ``updates`` updates: its embedding [M, p * d] and the
        accuracies measured on it."""
        m = self.members
        row = len(self.snapshot_steps) - 1 if final else (updates - self._snapshot_first) // self.study["log_every"]
        self.history_embedding[row].index_copy_(0, m.ids, embedding)
        self.history_train[row].index_copy_(0, m.ids, m.train_correct.to(torch.int32))
        self.history_val[row].index_copy_(0, m.ids, m.val_correct.to(torch.int32))
        self.history_taken[row].index_fill_(0, m.ids, True)

    def _embedding(self) -> torch.Tensor:
        """A float32 copy of every member's embedding, [M, p * d] (the step updates in place)."""
        return self.params["embedding"].flatten(1).to(torch.float32, copy=True)

    def take_step(self, train_step: Callable, step: int) -> None:
        """Training step ``step`` of every member, with ``train_step`` (``toy_train_step``, compiled
        or not): parameters and AdamW state in place, the members' results replaced."""
        m = self.members
        m.results = train_step(self.arch, self.classification, self.n_train, self.need_train, self.need_val,
                               self.params, self.optimizer.next_step_arguments(), m.inputs, m.labels,
                               m.targets, m.results, torch.tensor(step, device=self.device))

    @torch.no_grad()
    def run(self) -> ShardResult:
        budget = self.study["budget"]
        check_every = self.settings.check_every
        if self.start_step >= budget:
            raise ValueError(f"resume state is at step {self.start_step}, not below budget {budget}")
        train_step = train_step_function(self.settings.compile)
        step = self.start_step
        started, cell_steps = time.perf_counter(), 0
        for step in range(self.start_step + 1, budget + 1):
            updates = step - 1  # the model the step's forward uses has had this many updates
            m = self.members
            embedding = self._embedding() if self._is_snapshot_time(updates) else None
            self.take_step(train_step, step)
            if embedding is not None:
                self._snapshot(updates, embedding)
            cell_steps += len(m.ids)
            if step % PROGRESS_EVERY == 0:
                log.info("step %d: %d of %d cells training, %.0f cell-steps/s", step, len(m.ids),
                         len(self.cells), cell_steps / (time.perf_counter() - started))
            # stop: members with both thresholds reached, or diverged, leave the ensemble
            if step % check_every == 0:
                stop = self.stopping(self.settings.stop_early)
                if bool(stop.any()):
                    self.record(stop.nonzero().squeeze(1), step)
                    if bool(stop.all()):
                        self.members = m.select(stop.nonzero().squeeze(1)[:0])
                        break
                    self.compact((~stop).nonzero().squeeze(1))
        if len(self.members.ids):
            self._close(step)
        return self._result(budget)

    @torch.no_grad()
    def _close(self, step: int) -> None:
        """Validation accuracy of the last update: one more forward, then record everyone left."""
        m = self.members
        out = ensemble.forward(self.arch, self.params, m.inputs)
        loss, _, correct = toy_loss(out, m.labels, m.targets, self.n_train, self.classification)
        t_train, t_val, diverged_at, train_correct, val_correct = measure(
            m.results, torch.tensor(step + 1, device=self.device), loss, correct, self.n_train,
            self.need_train, self.need_val,
        )
        # The post-update train accuracy belongs to step + 1, which this run never trains.
        m.t_val, m.diverged_at, m.val_correct = t_val, diverged_at, val_correct
        self._snapshot(step, self._embedding(), final=True)  # the end state is always kept (continuations start from it)
        self.end_members = m
        self.end_step = step
        self.record(torch.arange(len(m), device=self.device), step)

    # ----------------------------------------------------------------------------- results
    def _result(self, budget: int) -> ShardResult:
        return ShardResult(metrics=self.metrics(budget), history=self._history(), end_state=self._end_state())

    def _history(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per-cell snapshots: step, train/val accuracy and embedding, every log_every updates."""
        taken = self.history_taken.cpu()
        embedding, train, val = (t.cpu() for t in (self.history_embedding, self.history_train, self.history_val))
        history = {}
        for i, cid in enumerate(self.cells["cell_id"]):
            rows = taken[:, i].nonzero().squeeze(1)
            if not len(rows):
                continue
            history[cid] = {
                "step": self.snapshot_steps[rows].to(torch.int32),
                "train_acc": train[rows, i].float() / self.n_train,
                "val_acc": val[rows, i].float() / self.n_val,
                "embedding": embedding[rows, i].view(len(rows), self.study["p"], -1).clone(),
            }
        return history

    def _end_state(self) -> dict[str, Any] | None:
        m = getattr(self, "end_members", None)
        if m is None or not len(m.ids):
            return None
        return self.end_state(m, self.end_step)


def train_toy_shard(
    study: dict[str, Any],
    cells: pd.DataFrame,
    settings: EngineSettings = EngineSettings(),
    resume: dict[str, Any] | None = None,
    splits: dict[int, ToySplit] | None = None,
) -> ShardResult:
    """Train the given cells of a toy study together; see the module docstring for semantics.

    ``splits`` (data seed -> split) default to the study's own; ``resume`` is a saved end state.
    """
    return ToyShardTrainer(study, cells, settings, resume, splits).run()
