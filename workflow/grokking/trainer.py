"""What every task's shard trainer shares: members, their record, compaction, continuation, tables.

A shard trains its cells as members of one stacked ensemble (leading member dimension). Every task
keeps, per member, the same five results (``RESULT_KEYS``: T_train, T_val, the divergence step and
the last measured correct counts) and, beside them, whatever its step needs (inputs, accumulators).
``ShardTrainer`` owns what does not depend on the task:

- ``Members``: the per-member tensors, which shrink together when members leave;
- the host-side record of members that left (``record``) and the stopping rule (``stopping``);
- compaction of members, parameters and optimizer state (``compact``);
- continuation from a saved end state (``load_resume``) and the end state itself (``end_state``);
- the metrics table, the same columns for every task (``metrics``).

A task's trainer (``tasks.toy_trainer.ToyShardTrainer``, ``tasks.mnist_trainer.MnistShardTrainer``) builds its members
and parameters, takes steps, measures, and records histories.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PROGRESS_EVERY = 10_000  # steps between progress lines in a training job's log
RESULT_KEYS = ("t_train", "t_val", "diverged_at", "train_correct", "val_correct")  # per member


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


@contextlib.contextmanager
def denormals_flushed():
    """Flush subnormal floats to zero while training, and restore the setting after: weights or
    optimizer moments that decay into the subnormal range make CPU arithmetic many times slower,
    and in a stacked shard one such member slows them all."""
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


class Members:
    """Per-member tensors that shrink together at compaction; index 0 is the member dimension.

    ``ids`` is each member's position in the shard's cell table; the ``RESULT_KEYS`` tensors are the
    results every task keeps; a task adds its own (inputs, accumulators) by name.
    """

    def __init__(self, **tensors: torch.Tensor):
        object.__setattr__(self, "_tensors", dict(tensors))

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)  # e.g. ``results``: its setter
        else:
            self._tensors[name] = value

    def __len__(self) -> int:
        return len(self._tensors["ids"])

    @property
    def results(self) -> tuple[torch.Tensor, ...]:
        return tuple(self._tensors[key] for key in RESULT_KEYS)

    @results.setter
    def results(self, values: tuple[torch.Tensor, ...]) -> None:
        self._tensors.update(zip(RESULT_KEYS, values))

    def select(self, keep: torch.Tensor) -> "Members":
        return Members(**{name: t.index_select(0, keep) for name, t in self._tensors.items()})


def new_members(M: int, device: torch.device, **extra: torch.Tensor) -> Members:
    """Members 0..M-1 with nothing reached yet (-1) and no correct count, plus the task's tensors."""
    minus_one = torch.full((M,), -1, dtype=torch.long, device=device)
    zero = torch.zeros(M, dtype=torch.long, device=device)
    return Members(ids=torch.arange(M, device=device), t_train=minus_one.clone(), t_val=minus_one.clone(),
                   diverged_at=minus_one.clone(), train_correct=zero.clone(), val_correct=zero.clone(),
                   **extra)


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


def running_state(cells: pd.DataFrame, members: Members, params: dict[str, torch.Tensor], optimizer: Any,
                  step: int, **extra: Any) -> dict[str, Any] | None:
    """Full state (parameters, the optimizer's per-member state such as AdamW's moments, thresholds)
    of the members that neither converged nor diverged, for a continuation; None when there is none."""
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
        **{name: {n: take(v) for n, v in getattr(optimizer, name).items()} for name in optimizer.state_names},
        **{k: take(getattr(m, k)) for k in RESULT_KEYS},
    }


class ShardTrainer:
    """The task-independent half of a shard's training (see the module docstring).

    A subclass sets ``members``, ``params`` (stacked, ``{name: [M, ...]}``) and ``optimizer`` (a
    batched optimizer of ``grokking.optim``: ``select`` and its ``state_names``), ``n_train`` and
    ``n_val``, and calls ``start_record`` once its members exist.
    """

    members: Members
    params: dict[str, torch.Tensor]
    optimizer: Any
    n_train: int
    n_val: int

    def __init__(self, study: dict[str, Any], cells: pd.DataFrame, settings: EngineSettings):
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
        self.activation = str(activations[0])
        self.start_step = 0

    def start_record(self) -> None:
        """The host-side record of every member, filled as members leave and at the end."""
        self.final = {key: torch.full((len(self.cells),), -1, dtype=torch.long)
                      for key in (*RESULT_KEYS, "steps_run")}

    def record(self, leaving: torch.Tensor, step: int) -> None:
        """Copy the results of the members at positions ``leaving`` to the host record."""
        m = self.members
        ids = m.ids.index_select(0, leaving).cpu()
        for key in RESULT_KEYS:
            self.final[key][ids] = getattr(m, key).index_select(0, leaving).cpu()
        self.final["steps_run"][ids] = step

    def stopping(self, stop_early: bool) -> torch.Tensor:
        """[M] bool: members that reached both thresholds (when stopping early) or diverged."""
        m = self.members
        return ((m.t_train >= 0) & (m.t_val >= 0) & stop_early) | (m.diverged_at >= 0)

    def select_params(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters of members ``keep``; autograd-trained tasks make them leaves again."""
        return {n: v.index_select(0, keep) for n, v in self.params.items()}

    def compact(self, keep: torch.Tensor) -> None:
        """Keep only the members at positions ``keep``: their tensors, parameters and optimizer state."""
        self.members = self.members.select(keep)
        self.params = self.select_params(keep)
        self.optimizer.select(self.params, keep)

    def load_resume(self, state: dict[str, Any]) -> None:
        """Continue members from a saved end state instead of their initialisation."""
        position = {cid: i for i, cid in enumerate(state["cell_ids"])}
        missing = [c for c in self.cells["cell_id"] if c not in position]
        if missing:
            raise ValueError(f"resume state has no saved state for cells {missing[:3]}")
        rows = torch.tensor([position[c] for c in self.cells["cell_id"]])
        take = lambda t: t.index_select(0, rows).to(self.device)  # noqa: E731
        with torch.no_grad():
            for n in self.params:
                self.params[n].copy_(take(state["params"][n]))
                for name in self.optimizer.state_names:
                    getattr(self.optimizer, name)[n].copy_(take(state[name][n]))
        self.optimizer.step_count = self.start_step = int(state["step"])
        for key in RESULT_KEYS:
            setattr(self.members, key, take(state[key]))

    def metrics(self, budget: int) -> pd.DataFrame:
        return metrics_table(self.cells, self.final, budget, self.n_train, self.n_val)

    def end_state(self, members: Members, step: int, **extra: Any) -> dict[str, Any] | None:
        return running_state(self.cells, members, self.params, self.optimizer, step, **extra)

    def budget_end_state(self, end_step: int) -> dict[str, Any] | None:
        """Full state of the members that ran to the budget unconverged, with the batch seed their
        order replays from (continuations resume it); None when training stopped before the budget."""
        if not len(self.members) or end_step != self.study["budget"]:
            return None
        return self.end_state(self.members, end_step, batch_seed=self.study["batch_seed"])


def with_final_losses(metrics: pd.DataFrame, history: dict[str, torch.Tensor]) -> pd.DataFrame:
    """The metrics table with each cell's last measured train and validation loss, from a history of
    ``[evaluations, cells]`` curves (NaN where a cell was not measured)."""
    for key in ("train_loss", "val_loss"):
        values = history[key]
        taken = ~torch.isnan(values)
        metrics[f"final_{key}"] = [values[taken[:, i], i][-1].item() if taken[:, i].any() else float("nan")
                                   for i in range(values.shape[1])]
    return metrics
