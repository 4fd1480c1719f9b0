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
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import torch

from grokking import ensemble
from grokking.data import ToySplit, toy_dataset
from grokking.models import build_toy_model
from grokking.optim import BatchedAdamW
from grokking.toy_step import measure, toy_loss, train_step_function

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PROGRESS_EVERY = 10_000  # steps between progress lines in the job's log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """How a shard runs; none of these change its results on a given device."""

    device: str = "cpu"
    compile: bool = True
    check_every: int = 10  # steps between early-stopping checks (host synchronisations)
    stop_early: bool = True  # False: converged members train on to the budget (benchmarks)


@dataclass
class ShardResult:
    metrics: pd.DataFrame  # one row per cell
    history: dict[str, dict[str, torch.Tensor]]  # cell id -> snapshots every log_every updates
    end_state: dict[str, Any] | None  # full state of the cells that did not stop, for continuation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


RESULT_KEYS = ("t_train", "t_val", "diverged_at", "train_correct", "val_correct")  # per member


def metrics_table(cells: pd.DataFrame, final: dict[str, torch.Tensor], budget: int, n_train: int,
                  n_val: int) -> pd.DataFrame:
    """One row per cell from a shard's host-side record (-1 = never); the same columns for every
    task, so aggregation, phases and figures are shared."""
    as_step = lambda t: pd.array([int(v) if v >= 0 else None for v in t], dtype="Int64")  # noqa: E731
    metrics = cells.copy()
    metrics["budget"] = budget
    metrics["steps_run"] = final["steps_run"].numpy()
    metrics["t_train"] = as_step(final["t_train"])
    metrics["t_val"] = as_step(final["t_val"])
    metrics["final_train_acc"] = final["train_correct"].numpy() / n_train
    metrics["final_val_acc"] = final["val_correct"].numpy() / n_val
    metrics["diverged"] = (final["diverged_at"] >= 0).numpy()
    metrics["diverged_step"] = as_step(final["diverged_at"])
    return metrics


def running_state(cells: pd.DataFrame, members: Any, params: dict[str, torch.Tensor],
                  optimizer: BatchedAdamW, step: int, **extra: Any) -> dict[str, Any] | None:
    """Full state (parameters, AdamW moments, thresholds) of the members that neither converged nor
    diverged, for a continuation; None when there is none."""
    m = members
    running = ~(((m.t_train >= 0) & (m.t_val >= 0)) | (m.diverged_at >= 0))
    rows = running.nonzero().squeeze(1)
    if not len(rows):
        return None
    take = lambda t: t.detach().index_select(0, rows).cpu()  # noqa: E731
    return {
        "cell_ids": [cells["cell_id"][int(i)] for i in m.ids.index_select(0, rows).cpu()],
        "step": step,
        **extra,
        "params": {n: take(v) for n, v in params.items()},
        "exp_avg": {n: take(v) for n, v in optimizer.exp_avg.items()},
        "exp_avg_sq": {n: take(v) for n, v in optimizer.exp_avg_sq.items()},
        **{k: take(getattr(m, k)) for k in RESULT_KEYS},
    }


def count_needed(threshold: float, n: int) -> int:
    """Smallest number of correct answers out of n whose accuracy k / n is >= threshold."""
    return next(k for k in range(n + 1) if k / n >= threshold)


@dataclass
class _Members:
    """Per-member tensors that shrink together at compaction. Index 0 is the member dimension."""

    ids: torch.Tensor  # [M] position of each member in the shard's cell table
    inputs: torch.Tensor  # [M, n_train + n_val, p] one-hot pair rows
    labels: torch.Tensor  # [M, n_train + n_val]
    targets: torch.Tensor  # [M, classes, dim] regression targets (empty for classification)
    t_train: torch.Tensor  # [M] long, -1 until reached
    t_val: torch.Tensor  # [M]
    diverged_at: torch.Tensor  # [M], -1 unless the loss became NaN/Inf
    train_correct: torch.Tensor  # [M] last measured
    val_correct: torch.Tensor  # [M]

    @property
    def results(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, key) for key in RESULT_KEYS)

    @results.setter
    def results(self, values: tuple[torch.Tensor, ...]) -> None:
        for key, value in zip(RESULT_KEYS, values):
            setattr(self, key, value)

    def select(self, keep: torch.Tensor) -> "_Members":
        pick = lambda t: t.index_select(0, keep)  # noqa: E731
        return _Members(
            ids=pick(self.ids),
            inputs=pick(self.inputs),
            labels=pick(self.labels),
            targets=pick(self.targets),
            t_train=pick(self.t_train),
            t_val=pick(self.t_val),
            diverged_at=pick(self.diverged_at),
            train_correct=pick(self.train_correct),
            val_correct=pick(self.val_correct),
        )


class ToyShardTrainer:
    """Everything needed to train one shard of a toy study; ``run`` does the training."""

    def __init__(
        self,
        study: dict[str, Any],
        cells: pd.DataFrame,
        settings: EngineSettings,
        resume: dict[str, Any] | None = None,
        splits: dict[int, ToySplit] | None = None,
    ):
        if cells.empty:
            raise ValueError("a shard needs at least one cell")
        activations = cells["activation"].unique()
        if len(activations) != 1:
            raise ValueError(f"a shard trains one architecture; got activations {list(activations)}")
        self.study = study
        self.cells = cells.reset_index(drop=True)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = DTYPES[study["dtype"]]
        self.arch = ensemble.toy_architecture(str(activations[0]))
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
        minus_one = torch.full((M,), -1, dtype=torch.long, device=dev)
        self.members = _Members(
            ids=torch.arange(M, device=dev),
            inputs=ensemble.one_hot_pairs(pairs, p, self.dtype).to(dev),
            labels=labels.to(dev),
            targets=targets.to(device=dev, dtype=self.dtype),
            t_train=minus_one.clone(),
            t_val=minus_one.clone(),
            diverged_at=minus_one.clone(),
            train_correct=torch.zeros(M, dtype=torch.long, device=dev),
            val_correct=torch.zeros(M, dtype=torch.long, device=dev),
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
        self.start_step = 0
        if resume is not None:
            self._load_resume(resume)
        # Host-side record of every member, filled as members stop and at the end.
        self.final = {
            key: torch.full((M,), -1, dtype=torch.long)
            for key in (*RESULT_KEYS, "steps_run")
        }
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

    def _load_resume(self, state: dict[str, Any]) -> None:
        """Continue members from a saved end state instead of their initialisation."""
        position = {cid: i for i, cid in enumerate(state["cell_ids"])}
        missing = [c for c in self.cells["cell_id"] if c not in position]
        if missing:
            raise ValueError(f"resume state has no saved state for cells {missing[:3]}")
        rows = torch.tensor([position[c] for c in self.cells["cell_id"]])
        dev = self.device
        take = lambda t: t.index_select(0, rows).to(dev)  # noqa: E731
        with torch.no_grad():
            for n in self.params:
                self.params[n].copy_(take(state["params"][n]))
                self.optimizer.exp_avg[n].copy_(take(state["exp_avg"][n]))
                self.optimizer.exp_avg_sq[n].copy_(take(state["exp_avg_sq"][n]))
        self.optimizer.step_count = int(state["step"])
        self.start_step = int(state["step"])
        for key in RESULT_KEYS:
            setattr(self.members, key, take(state[key]))

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

    def _record(self, keep_mask: torch.Tensor, step: int) -> None:
        """Copy the results of members leaving the ensemble (``~keep_mask``) to the host record."""
        m = self.members
        leaving = (~keep_mask).nonzero().squeeze(1)
        ids = m.ids.index_select(0, leaving).cpu()
        for key in RESULT_KEYS:
            self.final[key][ids] = getattr(m, key).index_select(0, leaving).cpu()
        self.final["steps_run"][ids] = step

    def _compact(self, keep_mask: torch.Tensor) -> None:
        keep = keep_mask.nonzero().squeeze(1)
        self.members = self.members.select(keep)
        self.params = {n: v.index_select(0, keep) for n, v in self.params.items()}
        self.optimizer.select(self.params, keep)

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
                converged = (m.t_train >= 0) & (m.t_val >= 0) & self.settings.stop_early
                stop = converged | (m.diverged_at >= 0)
                if bool(stop.any()):
                    self._record(~stop, step)
                    if bool(stop.all()):
                        self.members = m.select(stop.nonzero().squeeze(1)[:0])
                        break
                    self._compact(~stop)
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
        self._record(torch.zeros_like(m.ids, dtype=torch.bool), step)

    # ----------------------------------------------------------------------------- results
    def _result(self, budget: int) -> ShardResult:
        metrics = metrics_table(self.cells, self.final, budget, self.n_train, self.n_val)
        return ShardResult(metrics=metrics, history=self._history(), end_state=self._end_state())

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
        return running_state(self.cells, m, self.params, self.optimizer, self.end_step)


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
