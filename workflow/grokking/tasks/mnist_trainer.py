"""Train a shard of MNIST cells as one vectorized ensemble (report section 3, Figs. 2, 5, 6).

Training follows the report's public code: AdamW with the encoder at a fixed lr (1e-3) and the decoder
at the cell's lr, the cell's weight decay on both groups, MSE between logits and one-hot targets,
minibatches of 200 reshuffled every epoch. Step s = 1, 2, ... is the s-th optimizer update.

Batch order. The public code reseeds every run identically, so all its runs see the same shuffled
batches. Here too: one generator seeded with ``batch_seed`` draws every epoch's permutation
(``grokking.mnist.batches``), and every member of a shard trains on the same batch at the same step.
That lets the shard share one input batch: x is [batch, 784] for all members. The order is not
bit-identical to the public code's, whose global torch RNG also feeds its evaluation loader (so its
order depends on its evaluation schedule and budget); ours depends on the step only, which is what
makes a continuation equal one uninterrupted run.

Evaluation schedule (study key ``eval``, ``grokking.schedule``; stated because T values depend on
it). "Accuracy at step s" is the accuracy of the model after s updates on the whole validation set
(10,000 test images), at every step s of the schedule: by default every 5 steps up to 500, then
coarser strides up to every 500 steps after 10,000 (430 evaluations in 1e5 steps), so T values
below 2,000 steps are within 5 steps or 2 % of the exact crossing. The training accuracy is, by
default (``train_accuracy: subset``), that of the same model on the whole training subset (1000
images); ``running`` is the public code's definition instead, the share of correct pre-update
predictions over the batches of the epoch ending at s (no extra forward, but it lags the model).
T_train / T_val are the first steps of the schedule at which the accuracy is strictly above
``threshold`` (0.6, as in the code); a run whose budget is reached without it leaves T empty. The
budget (and the extended budget) must be steps of the schedule, which the config check enforces, so
the final accuracies are measured at the last step and a continuation starts on the schedule.

Options of 003 Table 3 and Omnigrok (``grokking.mnist_ablations``). A cell may change its init
scale, loss (MSE or cross-entropy), optimizer (AdamW, Adam, SGD) and augmentation through grid axes,
so those rows of Table 3 share one shard and one batch order; ``constrain_norm`` holds every
member's parameter norm at its initial value. A study without them trains exactly as before (the
report's path: MSE, ``BatchedAdamW``, no copies of the batch). Histories also hold each evaluation's
train and validation loss (the cell's own loss; NaN for the train split under ``train_accuracy:
running``, which has no train forward) and the L2 norm of all parameters.

Stopping. A member stops at the evaluation step where both thresholds are reached (early stopping,
as in the paper; ``stop_early: false`` trains on to the budget, e.g. for Fig. 6's curves). A member
whose training loss becomes NaN/Inf is recorded as diverged at that step and leaves the ensemble at
the next check (every ``check_every`` steps or evaluation). Leaving members are removed from the
stacked tensors (compaction). No result depends on check_every, on the shard's other members or
on their number.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from grokking import ensemble
from grokking.mnist import (
    N_CLASSES, MnistData, batches, build_mnist_model, mnist_architecture, pixels, stack_mnist_models,
)
from grokking.mnist_ablations import (
    MemberAugmentations, MixedOptimizer, NormConstraint, cell_settings, member_loss, squared_norms,
)
from grokking.optim import BatchedAdamW
from grokking.schedule import eval_steps, is_eval_step  # noqa: F401 (is_eval_step: part of this module's API)
from grokking.trainer import PROGRESS_EVERY, EngineSettings, ShardResult, ShardTrainer, new_members

EVAL_CHUNK = 2500  # images per evaluation forward: bounds memory at members x 2500 x hidden

log = logging.getLogger(__name__)


def mse_to_one_hot(out: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """Each member's ``F.mse_loss(logits, one_hot)``: out [M, batch, 10], one_hot [batch, 10] -> [M]."""
    return (out - one_hot).pow(2).mean((1, 2))


def count_above(threshold: float, n: int) -> int:
    """Smallest number of correct answers out of n whose accuracy k / n is strictly above threshold."""
    return next(k for k in range(n + 1) if k / n > threshold)


class MnistShardTrainer(ShardTrainer):
    """Everything needed to train one shard of an MNIST study; ``run`` does the training."""

    def __init__(
        self,
        study: dict[str, Any],
        cells: pd.DataFrame,
        data: MnistData,
        settings: EngineSettings,
        resume: dict[str, Any] | None = None,
    ):
        super().__init__(study, cells, settings)
        wrong_seed = set(int(s) for s in cells["data_seed"]) - {data.data_seed}
        if wrong_seed:
            raise ValueError(f"cells want data seeds {sorted(wrong_seed)}, the dataset has {data.data_seed}")
        if not is_eval_step(study["budget"], study["eval"]):
            raise ValueError(f"budget {study['budget']} is not an evaluation step of {study['eval']}")
        dev = self.device
        self.arch = mnist_architecture(self.activation)
        self.x_train = pixels(data.train_images, self.dtype).to(dev)  # [n_train, 784]
        self.y_train = data.train_labels.to(dev)
        self.x_val = pixels(data.val_images, self.dtype).to(dev)  # [n_val, 784]
        self.y_val = data.val_labels.to(dev)
        self.one_hot = torch.eye(N_CLASSES, dtype=self.dtype, device=dev)[self.y_train]  # [n_train, 10]
        self.n_train, self.n_val = len(self.y_train), len(self.y_val)
        self.running = study["train_accuracy"] == "running"
        self.steps_per_epoch = -(-self.n_train // study["batch_size"])
        self.need_train = count_above(study["threshold"], self.n_train)
        self.need_val = count_above(study["threshold"], self.n_val)
        self._build(resume)

    # ----------------------------------------------------------------------------- set-up
    def _build(self, resume: dict[str, Any] | None) -> None:
        cells, dev, M = self.cells, self.device, len(self.cells)
        options = cell_settings(self.study, cells)  # init scale, augment, loss, optimizer per cell
        models = {}
        keys = list(zip(cells["activation"], cells["model_seed"].astype(int), options["init_scale"].astype(float)))
        for act, seed, scale in keys:
            if (act, seed, scale) not in models:
                models[(act, seed, scale)] = build_mnist_model({**self.study, "init_scale": scale}, act, seed,
                                                               self.dtype)
        params = stack_mnist_models([models[key] for key in keys], self.dtype, dev)
        f64 = dict(dtype=torch.float64, device=dev)
        decay = torch.tensor(cells["wd"].to_numpy(), **f64)  # the swept wd applies to both groups
        lr = {"encoder": torch.full((M,), self.study["encoder_lr"], **f64),
              "decoder": torch.tensor(cells["lr"].to_numpy(), **f64)}
        self.params = {n: v.requires_grad_() for n, v in params.items()}
        kinds = list(options["optimizer"])
        if set(kinds) == {"adamw"}:  # the report's optimizer: its own class, as before these options
            self.optimizer = BatchedAdamW(self.params, self.arch.groups, lr, {"encoder": decay, "decoder": decay},
                                          compile=self.settings.compile)
        else:
            self.optimizer = MixedOptimizer(self.params, self.arch.groups, lr, {"encoder": decay, "decoder": decay},
                                            kinds, compile=self.settings.compile)
        self.norm_constraint = (NormConstraint(self.params, self.arch.param_names)
                                if self.study["constrain_norm"] else None)  # of the initial weights
        self.sigmas = [float(s) for s in options["augment"]]  # per member, compacted with them
        self.augmentations = MemberAugmentations(self.sigmas, self.study["batch_seed"])  # seeds both
        # Running accuracy (train_accuracy: running): correct pre-update predictions so far this epoch
        # and over the last complete one; zero at every epoch end, so never part of a saved state.
        zero = torch.zeros(M, dtype=torch.long, device=dev)
        cross_entropy = torch.tensor((options["loss"] == "cross_entropy").to_numpy(), device=dev)
        self.any_cross_entropy = bool(cross_entropy.any())
        self.members = new_members(M, dev, epoch_correct=zero.clone(), last_epoch_correct=zero.clone(),
                                   cross_entropy=cross_entropy)
        if resume is not None:
            self.load_resume(resume)
        self.start_record()
        # Preallocated history (one row per evaluation step): flat memory over long runs.
        steps = eval_steps(self.start_step, self.study["budget"], self.study["eval"])
        self.history_steps = torch.tensor(steps, dtype=torch.long)
        self.history_row = {s: i for i, s in enumerate(steps)}
        self.history_train = torch.zeros(len(steps), M, dtype=torch.int32, device=dev)
        self.history_val = torch.zeros(len(steps), M, dtype=torch.int32, device=dev)
        self.history_taken = torch.zeros(len(steps), M, dtype=torch.bool, device=dev)
        nan = torch.full((len(steps), M), float("nan"), dtype=torch.float64, device=dev)
        self.history_train_loss, self.history_val_loss, self.history_norm = nan.clone(), nan.clone(), nan.clone()

    def _loss(self, out: torch.Tensor, one_hot: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each member's own loss [M] (MSE for all when no member uses cross-entropy)."""
        return member_loss(out, one_hot, labels, self.members.cross_entropy if self.any_cross_entropy else None)

    def compact(self, keep: torch.Tensor) -> None:
        """As every task's, and the per-member options held outside the stacked tensors."""
        super().compact(keep)
        self.sigmas = [self.sigmas[i] for i in keep.tolist()]
        if self.norm_constraint is not None:
            self.norm_constraint.select(keep)

    def load_resume(self, state: dict[str, Any]) -> None:
        """As every task's, and the batch order must be the one the saved run used."""
        if state.get("batch_seed") != self.study["batch_seed"]:
            raise ValueError(f"resume state used batch_seed {state.get('batch_seed')}, "
                             f"the study {self.study['batch_seed']}")
        super().load_resume(state)

    # ----------------------------------------------------------------------------- training
    @torch.no_grad()
    def _count_correct(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[M] correct predictions (argmax of the logits) of every member over all rows of x, and
        [M] each member's mean loss over them (float64)."""
        M = len(self.members.ids)
        correct = torch.zeros(M, dtype=torch.long, device=self.device)
        loss = torch.zeros(M, dtype=torch.float64, device=self.device)
        eye = torch.eye(N_CLASSES, dtype=self.dtype, device=self.device)
        for xs, ys in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
            out = ensemble.forward(self.arch, self.params, xs.expand(M, -1, -1))  # [M, chunk, 10]
            correct += (out.argmax(-1) == ys).sum(1)
            loss += self._loss(out, eye[ys], ys).double() * len(ys)
        return correct, loss / len(y)

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        """Accuracies of the model after ``step`` updates; thresholds; a history row."""
        m = self.members
        if self.running:  # the config check puts evaluation steps at epoch ends
            train_correct = m.last_epoch_correct
            train_loss = torch.full_like(m.t_train, float("nan"), dtype=torch.float64)  # no train forward
        else:
            train_correct, train_loss = self._count_correct(self.x_train, self.y_train)
        val_correct, val_loss = self._count_correct(self.x_val, self.y_val)
        alive = m.diverged_at < 0
        m.train_correct = torch.where(alive, train_correct, m.train_correct)
        m.val_correct = torch.where(alive, val_correct, m.val_correct)
        m.t_train = torch.where(alive & (m.t_train < 0) & (train_correct >= self.need_train), step, m.t_train)
        m.t_val = torch.where(alive & (m.t_val < 0) & (val_correct >= self.need_val), step, m.t_val)
        row = self.history_row[step]
        self.history_train[row].index_copy_(0, m.ids, m.train_correct.to(torch.int32))
        self.history_val[row].index_copy_(0, m.ids, m.val_correct.to(torch.int32))
        self.history_taken[row].index_fill_(0, m.ids, True)
        self.history_train_loss[row].index_copy_(0, m.ids, train_loss)
        self.history_val_loss[row].index_copy_(0, m.ids, val_loss)
        self.history_norm[row].index_copy_(0, m.ids, squared_norms(self.params, self.arch.param_names).double().sqrt())

    def select_params(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Autograd trains these: the kept members' slices become leaves again."""
        with torch.no_grad():
            return {n: v.detach().index_select(0, keep).requires_grad_() for n, v in self.params.items()}

    def run(self) -> ShardResult:
        study, budget = self.study, self.study["budget"]
        if self.start_step >= budget:
            raise ValueError(f"resume state is at step {self.start_step}, not below budget {budget}")
        names = self.arch.param_names
        order = batches(self.n_train, study["batch_size"], study["batch_seed"], self.start_step)
        started, cell_steps, step = time.perf_counter(), 0, self.start_step
        for step in range(self.start_step + 1, budget + 1):
            m = self.members
            M = len(m.ids)
            # step: one shared batch for every member
            index = next(order).to(self.device)
            # [M, batch, 784]: a broadcast view without augmentation, else each member's transformed batch
            x = self.augmentations.inputs(self.x_train.index_select(0, index), self.sigmas, step)
            out = ensemble.forward(self.arch, self.params, x)  # [M, batch, 10]
            loss = self._loss(out, self.one_hot.index_select(0, index), self.y_train.index_select(0, index))  # [M]
            m.diverged_at = torch.where((m.diverged_at < 0) & ~torch.isfinite(loss.detach()), step,
                                        m.diverged_at)
            grads = torch.autograd.grad(loss.sum(), [self.params[n] for n in names])
            self.optimizer.step(dict(zip(names, grads)))
            if self.norm_constraint is not None:
                self.norm_constraint.apply(self.params)
            cell_steps += M
            if self.running:
                m.epoch_correct += (out.detach().argmax(-1) == self.y_train.index_select(0, index)).sum(1)
                if step % self.steps_per_epoch == 0:
                    m.last_epoch_correct, m.epoch_correct = m.epoch_correct, torch.zeros_like(m.epoch_correct)
            # evaluate
            evaluated = step in self.history_row
            if evaluated:
                self._evaluate(step)
            if step % PROGRESS_EVERY == 0:
                log.info("step %d: %d of %d cells training, %.0f cell-steps/s", step, M, len(self.cells),
                         cell_steps / (time.perf_counter() - started))
            # stop: converged (thresholds change only at evaluations) or diverged members leave
            if evaluated or step % self.settings.check_every == 0:
                stop = self.stopping(study["stop_early"])
                if step == budget:
                    break
                if bool(stop.any()):
                    self.record(stop.nonzero().squeeze(1), step)
                    self.compact((~stop).nonzero().squeeze(1))
                    if not len(self.members.ids):
                        break
        self.end_step = step
        if len(self.members.ids):
            self.record(torch.arange(len(self.members), device=self.device), step)
        return ShardResult(metrics=self._metrics(), history=self._history(),
                           end_state=self.budget_end_state(self.end_step))

    # ----------------------------------------------------------------------------- results
    def _metrics(self) -> pd.DataFrame:
        return self.metrics(self.study["budget"])

    def _history(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per cell: evaluation steps and the train / validation accuracy, loss and the parameter
        norm at each."""
        taken, train, val = (t.cpu() for t in (self.history_taken, self.history_train, self.history_val))
        train_loss, val_loss, norm = (t.cpu() for t in (self.history_train_loss, self.history_val_loss,
                                                         self.history_norm))
        history = {}
        for i, cid in enumerate(self.cells["cell_id"]):
            rows = taken[:, i].nonzero().squeeze(1)
            if len(rows):
                history[cid] = {
                    "step": self.history_steps[rows].to(torch.int32),
                    "train_acc": train[rows, i].float() / self.n_train,
                    "val_acc": val[rows, i].float() / self.n_val,
                    "train_loss": train_loss[rows, i].float(),
                    "val_loss": val_loss[rows, i].float(),
                    "param_norm": norm[rows, i].float(),
                }
        return history


def train_mnist_shard(
    study: dict[str, Any],
    cells: pd.DataFrame,
    data: MnistData,
    settings: EngineSettings = EngineSettings(),
    resume: dict[str, Any] | None = None,
) -> ShardResult:
    """Train the given cells of an MNIST study together; see the module docstring for semantics."""
    return MnistShardTrainer(study, cells, data, settings, resume).run()
