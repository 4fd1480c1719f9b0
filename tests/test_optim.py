"""The batched optimizers against M plain tensors, each updated by its own torch.optim optimizer.

Members differ in lr and weight decay per group; gradients are random and shared bit for bit, in
float64, so every comparison is exact: any change of an operation's order or rounding shows.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

from grokking.optim import (
    BatchedAdam,
    BatchedAdamW,
    BatchedOptimizer,
    BatchedSGD,
    make_optimizer,
    warmup_factor,
)

M = 3
STEPS = 20
SHAPES = {"w": (4, 5), "b": (1, 5)}  # no size equals M or M after compaction: no duck-sizing guard
GROUPS = {"main": ("w",), "bias": ("b",)}
DTYPE = torch.float64
LR = {"main": [1e-3, 3e-2, 1e-1], "bias": [2e-3, 5e-3, 5e-2]}
WD = {"main": [0.0, 0.5, 2.0], "bias": [1.0, 0.0, 0.3]}
TORCH = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CASES = [
    ("adamw", {"betas": (0.9, 0.98)}),
    ("adamw", {"betas": (0.9, 0.98), "warmup_steps": 5}),
    ("adam", {}),
    ("adam", {"betas": (0.9, 0.98), "eps": 1e-6, "warmup_steps": 5}),
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.8, "nesterov": True, "warmup_steps": 5}),
]


def case(i: int) -> Any:
    """CASES[i] as a pytest parameter named by its settings."""
    kind, settings = CASES[i]
    return pytest.param(kind, settings, id="-".join([kind, *(f"{k}={v}" for k, v in settings.items())]))


WARMUP_CASES = [case(1), case(3), case(7)]  # one per optimizer, the warm-up included


def initial_params(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.randn((M,) + s, generator=generator, dtype=DTYPE) for n, s in SHAPES.items()}


def gradients(steps: int = STEPS, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{n: torch.randn((M,) + s, generator=generator, dtype=DTYPE) for n, s in SHAPES.items()}
            for _ in range(steps)]


def batched(kind: str, params: dict[str, torch.Tensor], settings: dict[str, Any],
            compile: bool = False, members: tuple[int, ...] = tuple(range(M))) -> BatchedOptimizer:
    """A batched optimizer over ``params``, which hold the given members (all by default)."""
    lr, wd = ({g: torch.tensor([v[m] for m in members], dtype=DTYPE) for g, v in d.items()} for d in (LR, WD))
    return make_optimizer(kind, params, GROUPS, lr, wd, compile=compile, **settings)


def run_batched(optimizer: BatchedOptimizer, grads: list[dict[str, torch.Tensor]],
                keep: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """Parameters after every step (rows ``keep`` of each step's gradients when compacted)."""
    trajectory = []
    for g in grads:
        optimizer.step(g if keep is None else {n: v.index_select(0, keep) for n, v in g.items()})
        trajectory.append({n: v.clone() for n, v in optimizer.params.items()})
    return trajectory


def run_reference(kind: str, settings: dict[str, Any], member: int, grads: list[dict[str, torch.Tensor]]
                  ) -> list[dict[str, torch.Tensor]]:
    """Member ``member`` as a plain model: its own torch optimizer, LambdaLR for the warm-up."""
    settings = dict(settings)
    warmup = settings.pop("warmup_steps", 0)
    params = {n: v[member].clone().requires_grad_() for n, v in initial_params().items()}
    optimizer = TORCH[kind](
        [{"params": [params[n] for n in names], "lr": LR[g][member], "weight_decay": WD[g][member]}
         for g, names in GROUPS.items()],
        foreach=False, **settings,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(s / warmup, 1)) if warmup else None
    trajectory = []
    for g in grads:
        for n, p in params.items():
            p.grad = g[n][member].clone()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        trajectory.append({n: p.detach().clone() for n, p in params.items()})
    return trajectory


def assert_same_trajectory(batched_run: list[dict[str, torch.Tensor]], row: int,
                           reference: list[dict[str, torch.Tensor]]) -> None:
    """Bitwise equality of batched row ``row`` and the reference at every step."""
    for step, (ours, theirs) in enumerate(zip(batched_run, reference, strict=True), start=1):
        for n in SHAPES:
            assert torch.equal(ours[n][row], theirs[n]), f"{n}, row {row}, step {step}"


@pytest.mark.parametrize("kind,settings", [case(i) for i in range(len(CASES))])
def test_matches_torch_optimizer_per_member(kind, settings):
    grads = gradients()
    trajectory = run_batched(batched(kind, initial_params(), settings), grads)
    for m in range(M):
        assert_same_trajectory(trajectory, m, run_reference(kind, settings, m, grads))
    assert not torch.equal(trajectory[-1]["w"], initial_params()["w"]), "the optimizer did not move"


def test_warmup_factor_is_lambdalr_before_each_update():
    """LambdaLR evaluates its lambda at last_epoch = 0 on construction and steps after each
    update, so update k runs at factor(k - 1): lr 0 first, full lr from update warmup + 1."""
    warmup, lr = 4, 0.3
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(s / warmup, 1))
    for k in range(1, 10):
        assert optimizer.param_groups[0]["lr"] == lr * warmup_factor(k, warmup), k
        optimizer.step()
        scheduler.step()
    assert warmup_factor(1, warmup) == 0 and warmup_factor(warmup + 1, warmup) == 1
    assert warmup_factor(1, 0) == 1


@pytest.mark.parametrize("kind,settings", WARMUP_CASES)
def test_compaction_keeps_remaining_members_on_their_trajectories(kind, settings):
    grads, keep, split = gradients(), torch.tensor([0, 2]), 8
    full = run_batched(batched(kind, initial_params(), settings), grads)
    optimizer = batched(kind, initial_params(), settings)
    run_batched(optimizer, grads[:split])
    optimizer.select({n: v.index_select(0, keep) for n, v in optimizer.params.items()}, keep)
    after = run_batched(optimizer, grads[split:], keep)
    for row, member in enumerate(keep.tolist()):
        assert_same_trajectory(after, row, [{n: v[member] for n, v in s.items()} for s in full[split:]])


@pytest.mark.parametrize("kind,settings", WARMUP_CASES)
def test_saved_state_continues_identically(kind, settings):
    """Members [2, 0] saved after 8 steps (state(rows), or all members and load_state(.., rows)),
    loaded into a fresh optimizer over their saved parameters, continue as the uninterrupted run."""
    grads, rows, split = gradients(), torch.tensor([2, 0]), 8
    full = run_batched(batched(kind, initial_params(), settings), grads)
    first = batched(kind, initial_params(), settings)
    run_batched(first, grads[:split])
    assert first.state(rows)["step"] == split
    assert first.state().keys() == {"step", *type(first).state_names}
    for saved, load_rows in ((first.state(rows), None), (first.state(), rows)):
        params = {n: v.index_select(0, rows) for n, v in first.params.items()}
        resumed = batched(kind, params, settings, members=tuple(rows.tolist()))
        resumed.load_state(saved, load_rows)
        after = run_batched(resumed, grads[split:], rows)
        for row, member in enumerate(rows.tolist()):
            assert_same_trajectory(after, row, [{n: v[member] for n, v in s.items()} for s in full[split:]])


def test_load_state_takes_rows_of_an_engine_end_state():
    """An engine end state (all members' moments and the step) loads with ``rows`` picking members,
    and BatchedAdamW's state() writes the keys the engines save."""
    grads, rows = gradients(), torch.tensor([1, 2])
    source = batched("adamw", initial_params(), {})
    run_batched(source, grads[:5])
    end_state = {"step": 5, "cell_ids": ["a", "b", "c"], "params": source.params,
                 "exp_avg": source.exp_avg, "exp_avg_sq": source.exp_avg_sq}
    assert source.state().keys() == {"step", "exp_avg", "exp_avg_sq"}
    target = batched("adamw", {n: v.index_select(0, rows) for n, v in source.params.items()}, {})
    target.load_state(end_state, rows)
    assert target.step_count == 5
    for n in SHAPES:
        assert torch.equal(target.exp_avg[n], source.exp_avg[n][rows])
        assert torch.equal(target.exp_avg_sq[n], source.exp_avg_sq[n][rows])


def test_sgd_momentum_buffer_starts_as_the_first_gradient():
    """torch sets the buffer to a clone of the first (L2-decayed) gradient, not a damped share."""
    optimizer = batched("sgd", initial_params(), {"momentum": 0.9, "nesterov": True})
    start, grads = initial_params(), gradients(1)
    optimizer.step(grads[0])
    for group, names in GROUPS.items():
        for n in names:
            for m in range(M):
                expected = grads[0][n][m].add(start[n][m], alpha=WD[group][m])  # torch's L2 term
                assert torch.equal(optimizer.momentum_buffer[n][m], expected), (n, m)


@pytest.mark.parametrize("kind,settings", [case(1), case(6)])  # AdamW warm-up, SGD Nesterov
def test_compiled_equals_eager(kind, settings):
    """The fused update agrees with the eager one (not bitwise: inductor contracts differently),
    and neither the step (warm-up, bias corrections, SGD's first step) nor compaction recompiles."""
    grads, keep = gradients(), torch.tensor([0, 2])
    runs = []
    for compile in (False, True):
        optimizer = batched(kind, initial_params(), settings, compile=compile)
        before = run_batched(optimizer, grads[:1])
        graphs = counters["stats"]["unique_graphs"]
        before += run_batched(optimizer, grads[1:10])
        optimizer.select({n: v.index_select(0, keep) for n, v in optimizer.params.items()}, keep)
        runs.append(before + run_batched(optimizer, grads[10:], keep))
        assert counters["stats"]["unique_graphs"] == graphs, "recompiled after the first step"
    for eager, compiled in zip(*runs, strict=True):
        for n in SHAPES:
            torch.testing.assert_close(compiled[n], eager[n], rtol=1e-12, atol=1e-14)


def test_factory_names_every_optimizer_and_refuses_others():
    params = initial_params()
    assert isinstance(batched("adamw", params, {}), BatchedAdamW)
    assert isinstance(batched("adam", params, {}), BatchedAdam)
    assert isinstance(batched("sgd", params, {"momentum": 0.5}), BatchedSGD)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        batched("lion", params, {})
    with pytest.raises(ValueError, match="Nesterov"):
        batched("sgd", params, {"nesterov": True})
