"""Toy-model training throughput: the engine against the report's one-model-per-process loop.

Both train the same cells for the same number of steps with early stopping off, using every core:
(a) baseline: one nn.Module with torch.optim.AdamW per cell (grokking.reference, the public code's
    way), cells spread over one single-threaded process per core;
(b) engine: the cells as stacked shards (one compiled step: forward, backward, AdamW), one
    single-threaded process per core;
(c) the generic path the next tasks use (grokking.stacked: torch.func over the plain nn.Module,
    autograd, the compiled batched AdamW), same shards: the toy's fused step stays only while (b)
    beats it.
Prints cell-steps per second of each, the speedup, and the GFLOP/s their matrix products achieve
against the machine's fp32 GEMM rate, measured the same way (one single-threaded 2048^3 GEMM per
worker process, all at once). For the engine it also prints the rate inside its matrix-product
kernels (from the profiler), which separates slow products from time spent around them, and the
rate of the same products replayed back to back with nothing in between: what the library achieves
on these shapes, so the most a step made of them could reach.

Shared machines drift by tens of per cent within minutes, so each round measures the GEMM rate, the
baseline and the engine back to back, and the summary takes each one's best round. The last line
is exactly `speedup: X.XX`.

    python benchmarks/engine.py --quick        # under a minute
    python benchmarks/engine.py                # about 6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from grokking.config import validate_config
from grokking.data import toy_split
from grokking.trainer import EngineSettings
from grokking.tasks.toy_trainer import ToyShardTrainer, train_toy_shard
from grokking.grid import study_cells
from grokking.models import build_toy_model
from grokking.optim import BatchedAdamW
from grokking.reference import reference_run
from grokking.stacked import StackedModel, group_parameters, train_step
from grokking.toy_step import toy_train_step
from workers import gemm_rate, timed_together, worker_pool

PRODUCT_OPS = (torch.ops.aten.bmm, torch.ops.aten.baddbmm, torch.ops.aten.mm, torch.ops.aten.addmm)
MATMUL_OPS = tuple(f"aten::{op.__name__}" for op in PRODUCT_OPS)  # their names in the profiler


def matmul_flops_per_cell_step(study: dict) -> float:
    """Useful FLOPs of one step's matrix products: forward on train + validation rows, backward on
    the train rows (gradients w.r.t. inputs and weights, twice the forward)."""
    p, d, h = study["p"], study["embedding_dim"], study["hidden"]
    k = 2 * p - 1 if study["objective"] == "classification" else study["regression_dim"]
    n_train, n_all = study["train_size"], p * (p + 1) // 2
    per_row = p * d + d * h + h * h + h * k
    return 2 * n_all * per_row + 4 * n_train * per_row


class _RecordProducts(TorchDispatchMode):
    """Keeps each matrix product run under it, with copies of its operands (same shapes, strides)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # Matrix-vector products (an output dimension of 1: the embedding, with d = 1) are loops in
        # the compiled step, not library calls.
        if func.overloadpacket in PRODUCT_OPS and 1 not in out.shape[-2:]:
            copy = lambda t: (torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).copy_(t)  # noqa: E731
                              if isinstance(t, torch.Tensor) else t)
            self.calls.append((func, tree_map(copy, args), tree_map(copy, kwargs)))
        return out


def step_products(study: dict, cells) -> list[tuple]:
    """The library matrix products of one engine training step of ``cells`` (op, operands), recorded
    from the uncompiled step: the ones the compiled step calls too (the profiler shows the same
    shapes)."""
    trainer = ToyShardTrainer(study, cells, EngineSettings(device="cpu", compile=False, stop_early=False))
    with torch.no_grad(), _RecordProducts() as recorder:
        trainer.take_step(toy_train_step, 1)
    return recorder.calls


def _products_alone(study: dict, cells, repeats: int = 100) -> float:
    """Seconds per cell-step of one step's products run back to back with nothing in between: what
    the step's products cost at the library's speed for their shapes, with caches to themselves. The
    whole step cannot run faster than this."""
    calls = step_products(study, cells)

    def replay() -> None:
        for _ in range(repeats):
            for func, args, kwargs in calls:
                func(*args, **kwargs)

    replay()
    return min(timed_together(replay) for _ in range(5)) / (repeats * len(cells))


def _baseline_worker(job: tuple[dict, list[tuple[float, float]], int]) -> float:
    study, cells, steps = job
    split = toy_split(study["p"], study["train_size"], study["regression_dim"], 42)
    reference_run(study, split, 1e-3, 0.0, 102, "tanh", 20, early_stop=False)  # warm up

    def train_all() -> None:
        for lr, wd in cells:
            reference_run(study, split, lr, wd, 102, "tanh", steps, early_stop=False)

    return timed_together(train_all)


def _engine_worker(job: tuple) -> tuple[float, float, float]:
    """Seconds for the shard, seconds per cell-step inside matrix-product kernels (profiled on a
    short extra run of the same shard), and seconds per cell-step of the products alone."""
    study, cells, steps = job
    settings = EngineSettings(device="cpu", compile=True, stop_early=False)
    train_toy_shard({**study, "budget": 20}, cells, settings)  # compile outside the timing
    seconds = timed_together(lambda: train_toy_shard({**study, "budget": steps}, cells, settings))
    profiled_steps = 50
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_toy_shard({**study, "budget": profiled_steps}, cells, settings)
    matmul_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATMUL_OPS)
    return seconds, matmul_us / 1e6 / (len(cells) * profiled_steps), _products_alone(study, cells)


def _generic_worker(job: tuple) -> float:
    """Seconds for the shard on the generic path: forward on the training rows, loss, autograd,
    the compiled AdamW, then a forward on the validation rows (what the engine's step measures)."""
    import torch.nn.functional as F

    study, cells, steps = job
    split = toy_split(study["p"], study["train_size"], study["regression_dim"], 42)
    classification = study["objective"] == "classification"
    wanted = split.y_train if classification else split.targets[split.y_train]
    loss_fn = F.cross_entropy if classification else F.mse_loss

    def train(n_steps: int) -> None:
        modules = [build_toy_model(study, a, int(s)) for a, s in zip(cells["activation"], cells["model_seed"])]
        model = StackedModel(modules)
        f64 = dict(dtype=torch.float64)
        lr = {"embedding": torch.full((len(cells),), study["embedding_lr"], **f64),
              "decoder": torch.tensor(cells["lr"].to_numpy(), **f64)}
        wd = {"embedding": torch.full((len(cells),), study["embedding_wd"], **f64),
              "decoder": torch.tensor(cells["wd"].to_numpy(), **f64)}
        groups = group_parameters(model.params, {"embedding": ("embedding.",), "decoder": ("decoder.",)})
        optimizer = BatchedAdamW(model.params, groups, lr, wd, compile=True)
        for _ in range(n_steps):
            train_step(model, optimizer, loss_fn, (split.x_train,), (wanted,))
            with torch.no_grad():
                model(split.x_val)

    train(20)  # compile outside the timing
    return timed_together(lambda: train(steps))


def _round(pool, study: dict, cells, steps: int, workers: int) -> tuple[float, float, float, float, float]:
    """One round: GEMM ceiling, baseline, engine. Returns GEMM GFLOP/s (all workers), baseline and
    engine cell-steps/s, the engine's matmul seconds per cell-step, and the products-alone seconds
    per cell-step."""
    gemm = gemm_rate(pool, workers)
    cell_steps = len(cells) * steps
    pairs = list(zip(cells["lr"], cells["wd"]))
    baseline_jobs = [(study, pairs[i::workers], steps) for i in range(workers)]
    # Each process times its own work (not its start-up); they run side by side, the slowest one
    # sets the wall time.
    baseline_s = max(pool.map(_baseline_worker, baseline_jobs, chunksize=1))
    shards = [cells.iloc[idx] for idx in np.array_split(np.arange(len(cells)), workers)]
    engine = pool.map(_engine_worker, [(study, s, steps) for s in shards], chunksize=1)
    engine_s = max(seconds for seconds, _, _ in engine)
    matmul_s = float(np.mean([in_kernels for _, in_kernels, _ in engine]))
    alone_s = float(np.mean([alone for _, _, alone in engine]))
    return gemm, cell_steps / baseline_s, cell_steps / engine_s, matmul_s, alone_s


def run(args: argparse.Namespace) -> float:
    config = validate_config({
        "engine": {}, "figures": {},
        "studies": {"toy": {
            "task": "toy", "objective": args.objective, "budget": args.steps, "log_every": 0,
            "grid": {"lr": {"scale": "log", "min": 1e-5, "max": 1e-2, "num": 21},
                     "wd": {"scale": "linear", "min": 0.0, "max": 20.0, "num": 21}},
        }},
    })
    study = config["studies"]["toy"]
    cells = study_cells(study).iloc[:: max(1, 441 // args.cells)].iloc[: args.cells]
    workers = args.workers
    flops = matmul_flops_per_cell_step(study)
    print(f"machine: {os.cpu_count()} cores, {workers} single-threaded worker processes")
    print(f"toy {args.objective}: {len(cells)} cells x {args.steps} steps, early stopping off, engine "
          f"shards of {-(-len(cells) // workers)}; {flops / 1e6:.2f} MFLOP of matrix products per cell-step")

    rounds = []
    # One process per core for the whole run, so the engine compiles once per process.
    with worker_pool(workers) as pool:
        for r in range(args.rounds):
            gemm, baseline, engine, matmul_s, alone_s = _round(pool, study, cells, args.steps, workers)
            rounds.append((gemm, baseline, engine, matmul_s, alone_s))
            print(f"round {r + 1}: GEMM {gemm:6.1f} GFLOP/s | baseline {baseline:6.0f} | engine "
                  f"{engine:6.0f} cell-steps/s | {engine / baseline:.2f}x")

    gemm = max(r[0] for r in rounds)
    baseline = max(r[1] for r in rounds)
    engine, matmul_s = max((r[2], r[3]) for r in rounds)
    alone_s = min(r[4] for r in rounds)
    print(f"best of {len(rounds)} round(s); fp32 GEMM rate {gemm:.1f} GFLOP/s "
          f"({workers} processes x one 2048^3 GEMM)")
    for name, rate in (("baseline (nn.Module + AdamW per cell)", baseline),
                       ("engine (stacked shards, compiled step)", engine)):
        achieved = rate * flops / 1e9
        print(f"{name:40s} {rate:9.0f} cell-steps/s  {achieved:6.1f} GFLOP/s "
              f"({100 * achieved / gemm:4.1f}% of GEMM)")
    in_kernels = flops / matmul_s / 1e9  # per process
    print(f"engine matrix-product kernels alone: {in_kernels:.1f} GFLOP/s per process "
          f"({100 * in_kernels * workers / gemm:.1f}% of GEMM), "
          f"{100 * matmul_s * engine / workers:.0f}% of the engine's time")
    alone = flops / alone_s / 1e9
    print(f"the same products alone, back to back: {alone:.1f} GFLOP/s per process "
          f"({100 * alone * workers / gemm:.1f}% of GEMM): the most a step made of them can reach")
    with worker_pool(workers) as pool:
        shards = [cells.iloc[idx] for idx in np.array_split(np.arange(len(cells)), workers)]
        generic_s = max(pool.map(_generic_worker, [(study, s, args.steps) for s in shards], chunksize=1))
    generic = len(cells) * args.steps / generic_s
    print(f"{'generic path (torch.func, compiled AdamW)':40s} {generic:9.0f} cell-steps/s  "
          f"({generic / engine:.2f}x the engine's fused step, one round)")
    speedup = engine / baseline
    print(f"speedup: {speedup:.2f}")
    return speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--objective", default="classification", choices=["classification", "regression"])
    parser.add_argument("--cells", type=int, default=None, help="cells (default 84, quick 42)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 1000, quick 200)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds, best one counts (default 2, quick 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: cores)")
    args = parser.parse_args()
    args.cells = args.cells or (42 if args.quick else 84)
    args.steps = args.steps or (200 if args.quick else 1000)
    args.rounds = args.rounds or (1 if args.quick else 2)
    run(args)


if __name__ == "__main__":
    main()
