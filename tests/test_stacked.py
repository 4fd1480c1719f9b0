"""The generic stacked path (grokking.stacked): members equal their modules trained alone, and it
reproduces the T values of the toy and MNIST fast paths."""

from __future__ import annotations

import time
from typing import Callable

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokking.data import ToySplit, toy_split
from grokking.trainer import EngineSettings
from grokking.tasks.toy_trainer import count_needed, train_toy_shard
from grokking.mnist import N_CLASSES, MnistData, batches, build_mnist_model, pixels, prepare_mnist, raw_folder
from grokking.tasks.mnist_trainer import count_above, train_mnist_shard
from grokking.models import build_toy_model
from grokking.optim import BatchedAdamW
from grokking.schedule import is_eval_step
from grokking.stacked import StackedModel, VmapLSTM, group_parameters, train_step
from tests.conftest import ROOT, load_config, study_with
from tests.test_engine import make_cells as make_toy_cells

F64 = torch.float64
EAGER = EngineSettings(device="cpu", compile=False, check_every=10)
TOY_GROUPS = {"embedding": ("embedding.",), "decoder": ("decoder.",)}
MNIST_GROUPS = {"encoder": ("encoder.",), "decoder": ("decoder.",)}
MNIST_ROOT = (ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="module")
def config() -> dict:
    torch.set_num_threads(1)  # the engine tests' setting: timings comparable, no oversubscription
    return load_config()


# ----------------------------------------------------------------------------- helpers
def per_member(values: dict[str, list[float]]) -> dict[str, torch.Tensor]:
    """{group: [one value per member]} -> the batched optimizer's float64 vectors."""
    return {group: torch.tensor(v, dtype=F64) for group, v in values.items()}


def stacked_adamw(model: StackedModel, rules: dict, lr: dict, wd: dict) -> BatchedAdamW:
    return BatchedAdamW(model.params, group_parameters(model.params, rules), per_member(lr), per_member(wd),
                        compile=False)


def adamw_alone(module: nn.Module, rules: dict, lr: dict[str, float], wd: dict[str, float]) -> torch.optim.AdamW:
    """torch's AdamW with the same groups, as the project's reference loops build it."""
    named = dict(module.named_parameters())
    groups = group_parameters(named, rules)
    return torch.optim.AdamW([{"params": [named[n] for n in names], "lr": lr[g], "weight_decay": wd[g]}
                              for g, names in groups.items()])


def step_alone(module: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, x, *targets) -> None:
    optimizer.zero_grad()
    loss_fn(module(x), *targets).backward()
    optimizer.step()


def assert_member_equals(model: StackedModel, m: int, module: nn.Module, rtol: float, atol: float) -> None:
    """Member m's parameters equal the module's, and export(m) gives them back as a module."""
    exported = dict(model.export(m).named_parameters())
    for name, value in module.named_parameters():
        torch.testing.assert_close(model.params[name][m].detach(), value.detach(), rtol=rtol, atol=atol, msg=name)
        assert torch.equal(exported[name], model.params[name][m].detach()), name


def toy_loss_fn(classification: bool) -> Callable:
    """One member's loss, as grokking.reference computes it (targets: labels, or wanted vectors)."""
    return F.cross_entropy if classification else F.mse_loss


# ----------------------------------------------------------------------------- 1. members equal modules alone
def test_parameter_groups_by_prefix_and_an_unmatched_name_is_an_error():
    names = ["embedding.weight", "decoder.0.weight", "decoder.0.bias", "head.weight"]
    assert group_parameters(names, {"embedding": ("embedding.",), "rest": ("",)}) == {
        "embedding": ("embedding.weight",), "rest": ("decoder.0.weight", "decoder.0.bias", "head.weight")}
    with pytest.raises(ValueError, match=r"\['head.weight'\] match no group"):
        group_parameters(names, TOY_GROUPS)


@pytest.mark.parametrize("objective", ["classification", "regression"])
def test_toy_members_with_their_own_splits_equal_adamw_alone(config, objective):
    study = study_with(config, "toy_cls" if objective == "classification" else "toy_regr")
    classification = objective == "classification"
    seeds = [(41, 101), (42, 102), (43, 103)]  # (data seed, model seed) per member
    lr = {"embedding": [study["embedding_lr"]] * 3, "decoder": [1e-3, 1e-2, 3.162e-4]}
    wd = {"embedding": [study["embedding_wd"]] * 3, "decoder": [1.0, 5.0, 0.0]}
    splits = [toy_split(study["p"], study["train_size"], study["regression_dim"], d) for d, _ in seeds]
    alone = [build_toy_model(study, "tanh", s).to(F64) for _, s in seeds]
    model = StackedModel([build_toy_model(study, "tanh", s) for _, s in seeds], dtype=F64)
    optimizer = stacked_adamw(model, TOY_GROUPS, lr, wd)
    targets = [s.y_train if classification else s.targets.to(F64)[s.y_train] for s in splits]
    x = torch.stack([s.x_train for s in splits])  # [M, n_train, 2]: one split per member
    loss_fn = toy_loss_fn(classification)
    optimizers = [adamw_alone(module, TOY_GROUPS, {g: v[m] for g, v in lr.items()}, {g: v[m] for g, v in wd.items()})
                  for m, module in enumerate(alone)]
    for _ in range(50):
        train_step(model, optimizer, loss_fn, (x,), (torch.stack(targets),), in_dims=0, target_dims=0)
        for module, opt, split, target in zip(alone, optimizers, splits, targets):
            step_alone(module, opt, loss_fn, split.x_train, target)
    for m, module in enumerate(alone):
        assert_member_equals(model, m, module, rtol=1e-10, atol=1e-13)


def test_mnist_members_equal_adamw_alone(config):
    """Random inputs: no MNIST files needed."""
    study = config["studies"]["mnist"]
    gen = torch.Generator().manual_seed(0)
    batches_ = [(torch.rand(64, 784, generator=gen, dtype=F64), torch.randint(0, 10, (64,), generator=gen))
                for _ in range(5)]
    lr = {"encoder": [study["encoder_lr"]] * 3, "decoder": [1e-3, 0.1, 1e-5]}
    wd = {"encoder": [1e-2, 1.0, 1e-5], "decoder": [1e-2, 1.0, 1e-5]}
    alone = [build_mnist_model(study, "relu", s, F64) for s in range(3)]
    model = StackedModel([build_mnist_model(study, "relu", s, F64) for s in range(3)])
    optimizer = stacked_adamw(model, MNIST_GROUPS, lr, wd)
    optimizers = [adamw_alone(module, MNIST_GROUPS, {g: v[m] for g, v in lr.items()}, {g: v[m] for g, v in wd.items()})
                  for m, module in enumerate(alone)]
    for step in range(50):
        x, y = batches_[step % len(batches_)]
        one_hot = F.one_hot(y, N_CLASSES).to(F64)
        train_step(model, optimizer, F.mse_loss, (x,), (one_hot,))  # one batch shared by all members
        for module, opt in zip(alone, optimizers):
            step_alone(module, opt, F.mse_loss, x, one_hot)
    for m, module in enumerate(alone):
        assert_member_equals(model, m, module, rtol=1e-10, atol=1e-12)


def test_compaction_keeps_members_and_their_optimizer_state(config):
    study = config["studies"]["mnist"]
    x, y = torch.rand(32, 784, dtype=F64), torch.randint(0, 10, (32,))
    one_hot = F.one_hot(y, N_CLASSES).to(F64)
    lr, wd = {"encoder": [1e-3] * 4, "decoder": [1e-3, 1e-2, 1e-1, 1.0]}, {"encoder": [0.1] * 4, "decoder": [0.1] * 4}
    full = StackedModel([build_mnist_model(study, "relu", s, F64) for s in range(4)])
    part = StackedModel([build_mnist_model(study, "relu", s, F64) for s in (1, 3)])
    full_opt = stacked_adamw(full, MNIST_GROUPS, lr, wd)
    part_opt = stacked_adamw(part, MNIST_GROUPS, {g: [v[1], v[3]] for g, v in lr.items()},
                             {g: [v[1], v[3]] for g, v in wd.items()})
    for step in range(6):
        if step == 3:  # members 0 and 2 leave mid-run
            full.select(torch.tensor([1, 3]), full_opt)
            assert full.members == 2
        train_step(full, full_opt, F.mse_loss, (x,), (one_hot,))
        train_step(part, part_opt, F.mse_loss, (x,), (one_hot,))
    for name in full.params:
        assert torch.equal(full.params[name], part.params[name]), name
        assert torch.equal(full_opt.exp_avg_sq[name], part_opt.exp_avg_sq[name]), name


def test_a_diverging_member_does_not_touch_the_others(config):
    study = config["studies"]["mnist"]
    model = StackedModel([build_mnist_model(study, "relu", s, F64) for s in range(3)])
    with torch.no_grad():
        model.params["decoder.weight"][1, 0, 0] = float("nan")
    x, y = torch.rand(16, 784, dtype=F64), torch.randint(0, 10, (16,))
    losses = model.losses(F.mse_loss, model(x), F.one_hot(y, N_CLASSES).to(F64))
    grads = model.gradients(losses)
    assert torch.isnan(losses[1]) and torch.isfinite(losses[[0, 2]]).all()
    for name, grad in grads.items():
        assert torch.isfinite(grad[[0, 2]]).all(), name


# ----------------------------------------------------------------------------- 2. the fast paths' T values
Ts = list[tuple[int | None, int | None]]  # (T_train, T_val) per cell, None = never reached


class Thresholds:
    """T_train / T_val bookkeeping of a test loop (-1 until reached); converged members leave the
    stacked model and its optimizer (compaction), as they leave the engines' ensembles."""

    def __init__(self, members: int):
        self.ids = torch.arange(members)  # each remaining member's cell
        self.t = torch.full((members, 2), -1)  # remaining members' (T_train, T_val)
        self.final = torch.full((members, 2), -1)  # every cell's, filled as members leave

    def reach(self, column: int, reached: torch.Tensor, step: int) -> None:
        """Column 0 (train) or 1 (validation): ``step`` is T where first ``reached``."""
        self.t[:, column] = torch.where((self.t[:, column] < 0) & reached, step, self.t[:, column])

    def leave_converged(self, model: StackedModel, optimizer: BatchedAdamW) -> bool:
        """Drop members with both T values; False when none is left."""
        keep = (self.t < 0).any(1)
        self.final[self.ids[~keep]] = self.t[~keep]
        rows = keep.nonzero().squeeze(1)
        model.select(rows, optimizer)
        self.ids, self.t = self.ids[rows], self.t[rows]
        return bool(len(rows))

    def result(self) -> Ts:
        self.final[self.ids] = self.t
        return [tuple(None if v < 0 else int(v) for v in row) for row in self.final]


def engine_ts(metrics: pd.DataFrame) -> Ts:
    return [tuple(None if pd.isna(v) else int(v) for v in row) for row in zip(metrics["t_train"], metrics["t_val"])]


def timed(run: Callable, *args) -> tuple[object, float]:
    started = time.perf_counter()
    return run(*args), time.perf_counter() - started


def generic_toy_shard(study: dict, cells: pd.DataFrame, split: ToySplit, check_every: int = 10) -> Ts:
    """The toy engine's semantics on the generic path: train accuracy of step s from the
    pre-update output, validation accuracy after the update, compaction of converged members."""
    classification = study["objective"] == "classification"
    dtype = getattr(torch, study["dtype"])
    M = len(cells)
    model = StackedModel([build_toy_model(study, a, int(s)) for a, s in zip(cells["activation"], cells["model_seed"])],
                         dtype=dtype)
    lr = {"embedding": [study["embedding_lr"]] * M, "decoder": list(cells["lr"])}
    wd = {"embedding": [study["embedding_wd"]] * M, "decoder": list(cells["wd"])}
    optimizer = stacked_adamw(model, TOY_GROUPS, lr, wd)
    targets = split.targets.to(dtype)
    wanted = split.y_train if classification else targets[split.y_train]
    need_train = count_needed(study["threshold"], len(split.y_train))
    need_val = count_needed(study["threshold"], len(split.y_val))

    def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [M] correct answers
        predicted = out.argmax(-1) if classification else torch.cdist(out, targets.expand(len(out), -1, -1)).argmin(-1)
        return (predicted == y).sum(1)

    record = Thresholds(M)
    for step in range(1, study["budget"] + 1):
        out = train_step(model, optimizer, toy_loss_fn(classification), (split.x_train,), (wanted,)).output
        record.reach(0, correct(out, split.y_train) >= need_train, step)
        with torch.no_grad():
            record.reach(1, correct(model(split.x_val), split.y_val) >= need_val, step)
        if step % check_every == 0 and not record.leave_converged(model, optimizer):
            break
    return record.result()


# lr, wd: two cells converge (one stops at 340 and leaves the ensemble), one reaches T_train only, one neither
TOY_CELLS = [(5.623e-4, 0.0), (5.623e-4, 1.0), (5.623e-3, 0.0), (1e-2, 5.0)]


def test_generic_path_reproduces_the_toy_engine_t_values(config):
    study = study_with(config, "toy_cls", budget=400, dtype="float64")
    cells = make_toy_cells(TOY_CELLS)
    split = toy_split(study["p"], study["train_size"], study["regression_dim"], 42)
    fast, fast_s = timed(train_toy_shard, study, cells, EAGER)
    generic, generic_s = timed(generic_toy_shard, study, cells, split)
    print(f"toy shard, {len(cells)} cells x {study['budget']} steps (float64, eager): "
          f"fast path {fast_s:.2f} s, generic {generic_s:.2f} s")
    assert generic == engine_ts(fast.metrics)
    assert sum(t is not None and v is not None for t, v in generic) >= 2, "no cell converged"


def generic_mnist_shard(study: dict, cells: pd.DataFrame, data: MnistData) -> Ts:
    """The MNIST engine's semantics on the generic path: shared minibatches in the engine's order,
    accuracies on the whole subset and test set at evaluation steps, strictly above the threshold."""
    dtype = getattr(torch, study["dtype"])
    M = len(cells)
    model = StackedModel([build_mnist_model(study, a, int(s), dtype)
                          for a, s in zip(cells["activation"], cells["model_seed"])])
    wd = list(cells["wd"])
    optimizer = stacked_adamw(model, MNIST_GROUPS, {"encoder": [study["encoder_lr"]] * M, "decoder": list(cells["lr"])},
                              {"encoder": wd, "decoder": wd})
    x_train, x_val = pixels(data.train_images, dtype), pixels(data.val_images, dtype)
    one_hot = F.one_hot(data.train_labels, N_CLASSES).to(dtype)
    need_train = count_above(study["threshold"], len(x_train))
    need_val = count_above(study["threshold"], len(x_val))

    @torch.no_grad()
    def correct(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum((model(xs).argmax(-1) == ys).sum(1) for xs, ys in zip(x.split(2500), y.split(2500)))

    order = batches(len(x_train), study["batch_size"], study["batch_seed"])
    record = Thresholds(M)
    for step in range(1, study["budget"] + 1):
        index = next(order)
        train_step(model, optimizer, F.mse_loss, (x_train[index],), (one_hot[index],))
        if not is_eval_step(step, study["eval"]):
            continue
        record.reach(0, correct(x_train, data.train_labels) >= need_train, step)
        record.reach(1, correct(x_val, data.val_labels) >= need_val, step)
        if not record.leave_converged(model, optimizer):
            break
    return record.result()


# lr, wd: in 100 steps two cells converge (and leave at 50 and 60), one reaches T_train only, one neither
MNIST_CELLS = [(1.0, 1.0), (0.3, 0.1), (0.5, 1.0), (2.0, 1.0)]


@pytest.mark.skipif(not raw_folder(MNIST_ROOT).exists(), reason="no MNIST files here")
def test_generic_path_reproduces_the_mnist_engine_t_values(config):
    data = prepare_mnist(MNIST_ROOT, 0, 1000, download=False)
    study = study_with(config, "mnist", budget=100, eval={"strides": [{"every": 10, "until": 300}], "every_after": 500})
    cells = pd.DataFrame([{"cell_id": f"c{i}", "lr": lr, "wd": wd, "data_seed": 0, "model_seed": 0,
                           "activation": "relu"} for i, (lr, wd) in enumerate(MNIST_CELLS)])
    fast, fast_s = timed(train_mnist_shard, study, cells, data, EAGER)
    generic, generic_s = timed(generic_mnist_shard, study, cells, data)
    print(f"MNIST shard, {len(cells)} cells x {study['budget']} steps ({study['dtype']}, eager): "
          f"fast path {fast_s:.2f} s, generic {generic_s:.2f} s")
    assert generic == engine_ts(fast.metrics)
    assert sum(t is not None and v is not None for t, v in generic) >= 2, "no cell converged"


# ----------------------------------------------------------------------------- 3. transformer, LSTM, dropout
class TinyTransformer(nn.Module):
    """A modular-arithmetic style transformer: tokens -> embedding -> encoder layer -> logits of the last."""

    def __init__(self, p: int = 11, d: int = 16, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(p, d)
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(d, p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [batch, seq] -> [batch, p]
        return self.decoder(self.layer(self.embedding(tokens))[:, -1])


class TinyLSTM(nn.Module):
    """Tokens -> embedding -> 2-layer LSTM -> logits of the last step; ``lstm`` is nn.LSTM or VmapLSTM."""

    def __init__(self, lstm: type[nn.LSTM] = nn.LSTM, p: int = 11, d: int = 8):
        super().__init__()
        self.embedding = nn.Embedding(p, d)
        self.lstm = lstm(d, 12, num_layers=2, batch_first=True)
        self.decoder = nn.Linear(12, p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.lstm(self.embedding(tokens))[0][:, -1])


SEQ_GROUPS = {"embedding": ("embedding.",), "rest": ("",)}


def modules(make: Callable[[], nn.Module], seeds=(0, 1, 2)) -> list[nn.Module]:
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(make().to(F64))
    return out


def check_forward_and_one_adamw_step(model: StackedModel, alone: list[nn.Module]) -> None:
    """Forward outputs (per-member token batches) and one AdamW step equal each module run alone."""
    tokens = torch.randint(0, 11, (len(alone), 8, 3), generator=torch.Generator().manual_seed(5))
    labels = tokens.sum(-1) % 11
    out = model(tokens, in_dims=0)
    for m, module in enumerate(alone):
        torch.testing.assert_close(out[m], module(tokens[m]), rtol=1e-12, atol=1e-13)
    lr = {"embedding": [1e-3, 1e-2, 3e-3], "rest": [1e-2, 1e-3, 3e-2]}
    wd = {"embedding": [0.0] * 3, "rest": [1.0, 0.1, 0.0]}
    train_step(model, stacked_adamw(model, SEQ_GROUPS, lr, wd), F.cross_entropy, (tokens,), (labels,), 0, 0)
    for m, module in enumerate(alone):
        step_alone(module, adamw_alone(module, SEQ_GROUPS, {g: v[m] for g, v in lr.items()},
                                       {g: v[m] for g, v in wd.items()}), F.cross_entropy, tokens[m], labels[m])
        # atol: the attention's key bias has a gradient of exactly 0 in exact arithmetic (softmax is
        # shift invariant), i.e. rounding noise of 1e-18..1e-17 that Adam (g / (|g| + eps)) turns into
        # updates of up to lr * 1e-9, different in sign between any two ways of computing it.
        assert_member_equals(model, m, module, rtol=1e-10, atol=1e-10)


def test_a_transformer_member_equals_the_module_alone():
    check_forward_and_one_adamw_step(StackedModel(modules(TinyTransformer)), modules(TinyTransformer))


def test_a_transformer_in_eval_mode_under_no_grad_is_batched_too():
    """Eval mode without grad is where the attention modules take their fused fast path, which vmap
    cannot batch: the stacked forward switches it off and gives the same outputs."""
    alone = [m.eval() for m in modules(TinyTransformer)]
    model = StackedModel(alone)
    tokens = torch.randint(0, 11, (8, 3))
    with torch.no_grad():
        out = model(tokens)
        for m, module in enumerate(alone):
            torch.testing.assert_close(out[m], module(tokens), rtol=1e-12, atol=1e-13)
    assert torch.backends.mha.get_fastpath_enabled()  # the global switch is restored


def test_vmap_cannot_batch_nn_lstm_so_it_loops_over_members_or_uses_vmap_lstm():
    tokens = torch.randint(0, 11, (8, 3))
    vectorized = StackedModel(modules(TinyLSTM))
    try:
        vectorized(tokens)
    except RuntimeError as error:  # torch 2.14: no batching rule for aten::lstm (pytorch#105982)
        assert "VmapLSTM" in str(error) and "vectorize=False" in str(error)
    else:
        pytest.fail("vmap batches nn.LSTM now: drop VmapLSTM and the loop fallback from the docs")
    # Fallback 1: member by member.
    check_forward_and_one_adamw_step(StackedModel(modules(TinyLSTM), vectorize=False), modules(TinyLSTM))
    # Fallback 2: VmapLSTM has nn.LSTM's parameters and initialisation, and vmap batches it.
    vmap_members = modules(lambda: TinyLSTM(VmapLSTM))
    for plain, member in zip(modules(TinyLSTM), vmap_members):
        assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), member.state_dict().values()))
    model = StackedModel(vmap_members)
    check_forward_and_one_adamw_step(model, modules(TinyLSTM))
    exported = model.export(0)
    plain = TinyLSTM()
    plain.load_state_dict(exported.state_dict())  # a member saves and loads as nn.LSTM state


def test_dropout_draws_different_masks_per_member_and_repeats_under_a_seed():
    torch.manual_seed(0)
    same = TinyTransformer(dropout=0.5).to(F64)
    model = StackedModel([same, same, same])  # three identical members
    tokens = torch.randint(0, 11, (8, 3))
    torch.manual_seed(1)
    first = model(tokens)
    torch.manual_seed(1)
    again = model(tokens)
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    model.randomness = "same"
    shared = model(tokens)
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[1], shared[2])
    model.eval()  # no dropout: every member is the module itself
    torch.testing.assert_close(model(tokens)[2], same.eval()(tokens), rtol=1e-12, atol=1e-13)
