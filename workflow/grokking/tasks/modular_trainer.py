"""Train a shard of modular-arithmetic cells (transformers, MLPs or LSTMs) as one stacked ensemble.

The members are ordinary ``nn.Module`` s of ``grokking.modular`` (``Decoder``, ``OperandMLP``,
``SequenceLSTM``) stacked by ``grokking.stacked`` (``torch.func.grad_and_value`` under ``vmap`` over
``functional_call``: no hand-written backward), updated by the batched AdamW, Adam or SGD of
``grokking.optim`` with per-member lr and weight decay and the public code's linear warm-up. A
member trained in a shard follows the trajectory of the same module trained alone with
``torch.optim`` (tests/test_modular.py). Long shards compile the stacked step and the evaluation
forward (``COMPILE_FROM_EQUATIONS``).

Step s = 1, 2, ... is the s-th optimizer update. Each member visits its training equations in its
own order, reshuffled every epoch (``modular.epoch_order``: seeded by batch_seed, the member's model
seed and the epoch), in minibatches of ``batch_size`` with a smaller last one (a DataLoader with
shuffle and without drop_last, as the public code); ``batch_size: 0`` is full-batch training. The
order depends on the step only, so a continuation replays it.

Evaluation (study key ``eval``, ``grokking.schedule``): at every step of the schedule, the model after
s updates is run on the whole training and validation split; accuracy and mean cross-entropy of
both, the parameter norm and (transformers) the Q/K/V/output projection norms of every layer are
recorded. T_train
and T_val are the first evaluation steps at which an accuracy reaches (>=) ``threshold``. With
``eval_rows``, large splits (K-ary sums: 69k equations) are measured on their first ``eval_rows``
equations, a fixed random sample, since measuring all would cost several times the training. The public
code's train accuracy was the running mean over an epoch's minibatches; measured on the whole split,
both T values describe the same model.

Denormal floats are flushed to zero while a shard trains (``torch.set_flush_denormal``), so that no
member whose AdamW moments decay into the subnormal range can slow the elementwise work of the
whole shard (subnormal arithmetic is many times slower on CPUs). One profile under heavy load showed
the optimizer at 45 % of a step without it and 15 % with it; the benchmark later counted no
subnormals in plain runs at p = 41, so the gain was not confirmed in an interleaved measurement.
The setting is restored afterwards.

Stopping. By default members train to the budget (``stop_early: false``), since the figures are
whole curves; a member whose loss becomes NaN/Inf is recorded as diverged and leaves at the next
check. No result depends on ``check_every`` or on the shard's other members.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch
from torch.nn import functional as F

from grokking.grid import axis_column
from grokking.modular import ModularSplit, attention_norm_names, build_model, epoch_order, input_noise
from grokking.optim import make_optimizer
from grokking.schedule import eval_steps, is_eval_step
from grokking.stacked import StackedModel, group_parameters
from grokking.trainer import (DTYPES, PROGRESS_EVERY, EngineSettings, ShardResult, ShardTrainer, denormals_flushed,
                              new_members, with_final_losses)

# Compiling the stacked step and evaluation forward costs 30-45 s per shard job and saves about 2 ms
# per member-update of 64 equations at M = 8 (12 at M = 1; benchmarks/modular.py): a shard that will
# push fewer equations than this through its members (updates x batch) trains eager. Results agree
# to rounding either way (tests/test_modular.py).
COMPILE_FROM_EQUATIONS = 20_000 * 64
PADDING = -100  # the answer of the rows that pad an evaluation's last chunk (cross_entropy's ignore_index)
EVAL_ROWS = 256  # equations per member and evaluation forward: activations stay in cache (135 -> 102 ms per member at 128 vs 4096 rows, benchmarks/modular.py)
CURVES = ("train_acc", "val_acc", "train_loss", "val_loss", "param_norm")

log = logging.getLogger(__name__)


def needed(threshold: float, n: int) -> int:
    """Smallest number of correct answers out of n whose accuracy k / n reaches the threshold."""
    return next(k for k in range(n + 1) if k / n >= threshold)


class ModularShardTrainer(ShardTrainer):
    """Everything needed to train one shard of a modular-arithmetic study; ``run`` trains it."""

    def __init__(self, study: dict[str, Any], cells: pd.DataFrame, splits: dict[int, ModularSplit],
                 settings: EngineSettings, resume: dict[str, Any] | None = None):
        super().__init__(study, cells, settings)
        missing = {int(s) for s in cells["data_seed"]} - set(splits)
        if missing:
            raise ValueError(f"cells want data seeds {sorted(missing)}, the dataset has {sorted(splits)}")
        if not is_eval_step(study["budget"], study["eval"]):
            raise ValueError(f"budget {study['budget']} is not an evaluation step of {study['eval']}")
        self.loss_dtype = DTYPES[study["loss_dtype"]]
        first = splits[int(cells["data_seed"].iloc[0])]
        self.n_equations = len(first.y_train)
        self.batch = min(study["batch_size"] or self.n_equations, self.n_equations)  # larger: full batch
        self.steps_per_epoch = -(-self.n_equations // self.batch)
        # Equations measured at an evaluation: all, or the first eval_rows of each split (the split is
        # a seeded permutation, so they are a random sample, the same at every evaluation).
        cap = study["eval_rows"] or max(len(first.y_train), len(first.y_val))
        self.n_train, self.n_val = min(cap, len(first.y_train)), min(cap, len(first.y_val))
        self.need_train = needed(study["threshold"], self.n_train)
        self.need_val = needed(study["threshold"], self.n_val)
        self._build(splits, resume)

    # ----------------------------------------------------------------------------- set-up
    def _build(self, splits: dict[int, ModularSplit], resume: dict[str, Any] | None) -> None:
        cells, dev, M, study = self.cells, self.device, len(self.cells), self.study
        updates = M * (study["budget"] - (resume or {}).get("step", 0))
        compiles = self.settings.compile and updates * self.batch >= COMPILE_FROM_EQUATIONS
        log.info("%d member-updates of %d equations: the stacked step runs %s", updates, self.batch,
                 "compiled" if compiles else "eager")
        scales = axis_column(cells, "init_scale")
        members = [build_model(study, int(s), a, float(scale))
                   for s, a, scale in zip(cells["model_seed"], cells["activation"], scales)]
        self.model = StackedModel(members, dtype=self.dtype, device=dev, compile=compiles)
        self.model.train(study["model"]["dropout"] > 0)
        self.params = self.model.params
        groups = group_parameters(self.params, {"all": ("",)})
        f64 = dict(dtype=torch.float64, device=dev)
        optimizer = study["optimizer"]
        if optimizer["name"] == "sgd":
            settings = dict(momentum=optimizer["momentum"], nesterov=optimizer["nesterov"])
        else:
            settings = dict(betas=tuple(optimizer["betas"]), eps=optimizer["eps"])
        self.optimizer = make_optimizer(
            optimizer["name"], self.params, groups,
            {"all": torch.tensor(cells["lr"].to_numpy(), **f64)},
            {"all": torch.tensor(cells["wd"].to_numpy(), **f64)},
            warmup_steps=optimizer["warmup_steps"], compile=self.settings.compile, **settings,
        )
        data = [splits[int(s)] for s in cells["data_seed"]]
        stack = lambda key: torch.stack([getattr(d, key) for d in data]).to(dev)  # noqa: E731
        self.members = new_members(
            M, dev, x_train=stack("x_train"), y_train=stack("y_train"), x_val=stack("x_val"),
            y_val=stack("y_val"), model_seed=torch.tensor(cells["model_seed"].to_numpy(), device=dev),
            order=torch.zeros(M, self.n_equations, dtype=torch.long, device=dev),
            noise=torch.tensor(axis_column(cells, "noise").to_numpy(), dtype=self.dtype, device=dev))
        self.noisy = bool((self.members.noise > 0).any())  # config check: transformers only
        self.final_params: dict[str, dict[str, torch.Tensor]] = {}
        if resume is not None:
            self.load_resume(resume)
        self.start_record()
        steps = eval_steps(self.start_step, study["budget"], study["eval"])
        self.history_steps = torch.tensor(steps, dtype=torch.long)
        self.history_row = {s: i for i, s in enumerate(steps)}
        self.history = {key: torch.full((len(steps), M), float("nan")) for key in CURVES}
        if study["model"]["architecture"] == "transformer":
            layers = study["model"]["layers"]
            self.attention_names = attention_norm_names(layers)
            self.history["attn_norm"] = torch.full((len(steps), M, layers, 4), float("nan"))
        else:
            self.attention_names = []

    def load_resume(self, state: dict[str, Any]) -> None:
        """As every task's, and the batch order must be the one the saved run used."""
        if state.get("batch_seed") != self.study["batch_seed"]:
            raise ValueError(f"resume state used batch_seed {state.get('batch_seed')}, "
                             f"the study {self.study['batch_seed']}")
        super().load_resume(state)

    def _noise(self, rows: int, step: int) -> torch.Tensor:
        """[M, rows, T, width] embedding noise of every member at ``step`` (zeros where its level is 0)."""
        m, study = self.members, self.study
        shape = (rows, m.x_train.shape[-1], study["model"]["width"])
        noise = [input_noise(shape, float(std), study["batch_seed"], int(seed), step) if std > 0
                 else torch.zeros(shape) for std, seed in zip(m.noise.cpu(), m.model_seed.cpu())]
        return torch.stack(noise).to(device=self.device, dtype=self.dtype)

    def _keep_weights(self, leaving: torch.Tensor) -> None:
        """With ``save_weights``, the parameters of the members that leave now, as their cells' final weights."""
        if not self.study["save_weights"]:
            return
        for position, index in zip(leaving.cpu(), self.members.ids.index_select(0, leaving).cpu()):
            self.final_params[self.cells["cell_id"].iloc[int(index)]] = {
                name: value[int(position)].detach().float().cpu().clone() for name, value in self.model.params.items()}

    def select_params(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.select(keep)
        return self.model.params

    # ----------------------------------------------------------------------------- training
    def _shuffle(self, epoch: int) -> None:
        """Every member's order of its training equations in ``epoch``."""
        m = self.members
        if self.batch >= self.n_equations:  # full batch: the order changes nothing but summation
            m.order = torch.arange(self.n_equations, device=self.device).expand(len(m), -1)
            return
        m.order = torch.stack([epoch_order(self.n_equations, self.study["batch_seed"], int(seed), epoch)
                               for seed in m.model_seed.cpu()]).to(self.device)

    def _member_loss(self, logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """One member's mean cross-entropy (in ``loss_dtype``): the loss it trains on."""
        return F.cross_entropy(logits.to(self.loss_dtype), answers)

    def _row_losses(self, logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """[M, rows] cross-entropy of every row (in ``loss_dtype``); rows answered ``PADDING`` count 0."""
        M, rows = answers.shape
        per_row = F.cross_entropy(logits.reshape(M * rows, -1).to(self.loss_dtype), answers.reshape(-1),
                                  reduction="none", ignore_index=PADDING)
        return per_row.view(M, rows)

    @torch.no_grad()
    def _measure(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[M] correct answers and mean loss of every member over all its rows of x [M, n, T].

        The rows go through the model in chunks of ``EVAL_ROWS``, the last one padded with
        ``PADDING`` rows that count neither as correct nor in the loss: every chunk has one shape,
        so the compiled forward is compiled once."""
        M, n = y.shape
        pad = -n % EVAL_ROWS
        x, y = F.pad(x, (0, 0, 0, pad)), F.pad(y, (0, pad), value=PADDING)
        correct = torch.zeros(M, dtype=torch.long, device=self.device)
        loss = torch.zeros(M, dtype=torch.float64, device=self.device)
        for xs, ys in zip(x.split(EVAL_ROWS, 1), y.split(EVAL_ROWS, 1)):
            logits = self.model(xs.contiguous(), in_dims=0)  # [M, EVAL_ROWS, vocab]
            correct += (logits.argmax(-1) == ys).sum(1)
            loss += self._row_losses(logits, ys).double().sum(1)
        return correct, loss / n

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        """Accuracies, losses and norms of the model after ``step`` updates; thresholds; a history row."""
        m = self.members
        self.model.eval()
        train_correct, train_loss = self._measure(m.x_train[:, :self.n_train], m.y_train[:, :self.n_train])
        val_correct, val_loss = self._measure(m.x_val[:, :self.n_val], m.y_val[:, :self.n_val])
        self.model.train(self.study["model"]["dropout"] > 0)
        alive = m.diverged_at < 0
        m.train_correct = torch.where(alive, train_correct, m.train_correct)
        m.val_correct = torch.where(alive, val_correct, m.val_correct)
        m.t_train = torch.where(alive & (m.t_train < 0) & (train_correct >= self.need_train), step, m.t_train)
        m.t_val = torch.where(alive & (m.t_val < 0) & (val_correct >= self.need_val), step, m.t_val)
        p = self.model.params
        norm = torch.sqrt(sum(v.detach().double().pow(2).flatten(1).sum(1) for v in p.values()))
        row, ids = self.history_row[step], m.ids.cpu()
        values = {"train_acc": train_correct / self.n_train, "val_acc": val_correct / self.n_val,
                  "train_loss": train_loss, "val_loss": val_loss, "param_norm": norm}
        for key, value in values.items():
            self.history[key][row, ids] = value.float().cpu()
        if self.attention_names:
            attention = torch.stack([torch.stack([p[n].detach().flatten(1).norm(dim=1) for n in layer], 1)
                                     for layer in self.attention_names], 1)  # [M, layers, 4]
            self.history["attn_norm"][row, ids] = attention.float().cpu()

    def run(self) -> ShardResult:
        with denormals_flushed():
            return self._run()

    def _run(self) -> ShardResult:
        study, budget = self.study, self.study["budget"]
        if self.start_step >= budget:
            raise ValueError(f"resume state is at step {self.start_step}, not below budget {budget}")
        started, cell_steps, step = time.perf_counter(), 0, self.start_step
        for step in range(self.start_step + 1, budget + 1):
            epoch, position = divmod(step - 1, self.steps_per_epoch)
            if position == 0 or step == self.start_step + 1:
                self._shuffle(epoch)
            m = self.members
            rows = m.order[:, position * self.batch:(position + 1) * self.batch]  # [M, b]
            x = m.x_train.gather(1, rows.unsqueeze(-1).expand(-1, -1, m.x_train.shape[-1]))
            y = m.y_train.gather(1, rows)
            inputs = (x, self._noise(rows.shape[1], step)) if self.noisy else (x,)
            _, losses, grads = self.model.value_and_gradients(self._member_loss, inputs, (y,), 0, 0)
            m.diverged_at = torch.where((m.diverged_at < 0) & ~torch.isfinite(losses), step, m.diverged_at)
            self.optimizer.step(grads)
            cell_steps += len(m)
            evaluated = step in self.history_row
            if evaluated:
                self._evaluate(step)
            if step % PROGRESS_EVERY == 0:
                log.info("step %d: %d of %d cells training, %.0f cell-steps/s", step, len(m), len(self.cells),
                         cell_steps / (time.perf_counter() - started))
            if evaluated or step % self.settings.check_every == 0:
                stop = self.stopping(study["stop_early"])
                if step == budget:
                    break
                if bool(stop.any()):
                    self._keep_weights(stop.nonzero().squeeze(1))
                    self.record(stop.nonzero().squeeze(1), step)
                    self.compact((~stop).nonzero().squeeze(1))
                    if not len(self.members):
                        break
        self.end_step = step
        if len(self.members):
            self._keep_weights(torch.arange(len(self.members), device=self.device))
            self.record(torch.arange(len(self.members), device=self.device), step)
        metrics = with_final_losses(self.metrics(self.study["budget"]), self.history)
        return ShardResult(metrics=metrics, history=self._history(), end_state=self.budget_end_state(self.end_step))

    # ----------------------------------------------------------------------------- results
    def _history(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per cell: evaluation steps and every recorded curve at them."""
        history = {}
        for i, cid in enumerate(self.cells["cell_id"]):
            rows = (~torch.isnan(self.history["train_acc"][:, i])).nonzero().squeeze(1)
            if len(rows):
                history[cid] = {"step": self.history_steps[rows].to(torch.int32),
                                **{key: values[rows, i] for key, values in self.history.items()}}
            if cid in self.final_params:
                history.setdefault(cid, {})["final_params"] = self.final_params[cid]
        return history


def train_modular_shard(study: dict[str, Any], cells: pd.DataFrame, splits: dict[int, ModularSplit],
                        settings: EngineSettings = EngineSettings(),
                        resume: dict[str, Any] | None = None) -> ShardResult:
    """Train the given cells of a modular-arithmetic study together (see the module docstring)."""
    return ModularShardTrainer(study, cells, splits, settings, resume).run()
