"""Toy-model training throughput: the engine against the report's one-model-per-process loop.

Both train the same cells for the same number of steps with early stopping off, using every core:
(a) baseline: one nn.Module with torch.optim.AdamW per cell (grokking.reference, the public code's
    way), cells spread over one single-threaded process per core;
(b) engine: the cells as stacked shards (one compiled step: forward, backward, AdamW), one
    single-threaded process per core.
Prints cell-steps per second of each, the speedup, the GFLOP/s their matrix products achieve and,
measured in the same run, the machine's fp32 GEMM rate. The last line is exactly `speedup: X.XX`.

    python benchmarks/engine.py --quick        # under a minute
    python benchmarks/engine.py                # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
import pandas as pd
import torch

from grokking.config import validate_config
from grokking.data import toy_split
from grokking.engine import EngineSettings, train_toy_shard
from grokking.grid import study_cells
from grokking.reference import reference_run


def gemm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-n fp32 GEMM rate with all cores: the ceiling the matrix products are measured against."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_flops_per_cell_step(study: dict) -> float:
    """Useful FLOPs of one step's matrix products: forward on train + validation rows, backward on
    the train rows (gradients w.r.t. inputs and weights, twice the forward)."""
    p, d, h = study["p"], study["embedding_dim"], study["hidden"]
    k = 2 * p - 1 if study["objective"] == "classification" else study["regression_dim"]
    n_train, n_all = study["train_size"], p * (p + 1) // 2
    per_row = p * d + d * h + h * h + h * k
    return 2 * n_all * per_row + 4 * n_train * per_row


def _baseline_worker(job: tuple[dict, list[tuple[float, float]], int]) -> float:
    study, cells, steps = job
    torch.set_num_threads(1)
    split = toy_split(study["p"], study["train_size"], study["regression_dim"], 42)
    reference_run(study, split, 1e-3, 0.0, 102, "tanh", 20, early_stop=False)  # warm up

    def train_all() -> None:
        for lr, wd in cells:
            reference_run(study, split, lr, wd, 102, "tanh", steps, early_stop=False)

    return _timed(train_all)


def _engine_worker(job: tuple[dict, pd.DataFrame, int]) -> float:
    study, cells, steps = job
    torch.set_num_threads(1)
    settings = EngineSettings(device="cpu", compile=True, stop_early=False)
    train_toy_shard({**study, "budget": 20}, cells, settings)  # compile outside the timing
    return _timed(lambda: train_toy_shard({**study, "budget": steps}, cells, settings))


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
    cell_steps = len(cells) * args.steps
    flops = matmul_flops_per_cell_step(study)
    ctx = mp.get_context("spawn")

    gemm = gemm_gflops(workers)
    print(f"machine: {os.cpu_count()} cores, {workers} worker processes; "
          f"fp32 GEMM (2048^3, {workers} threads): {gemm:.1f} GFLOP/s")
    print(f"toy {args.objective}: {len(cells)} cells x {args.steps} steps, early stopping off; "
          f"{flops / 1e6:.2f} MFLOP of matrix products per cell-step")

    pairs = list(zip(cells["lr"], cells["wd"]))
    chunks = [pairs[i::workers] for i in range(workers)]
    # Each process times its own work (not its start-up); they run side by side, the slowest one
    # sets the wall time.
    with ctx.Pool(workers) as pool:
        baseline_s = max(pool.map(_baseline_worker, [(study, c, args.steps) for c in chunks]))
    baseline = cell_steps / baseline_s

    shards = [cells.iloc[idx] for idx in np.array_split(np.arange(len(cells)), workers)]
    with ctx.Pool(workers) as pool:
        engine_s = max(pool.map(_engine_worker, [(study, s, args.steps) for s in shards]))
    engine = cell_steps / engine_s

    for name, rate in (("baseline (nn.Module + AdamW per cell)", baseline),
                       (f"engine (shards of {len(shards[0])}, compiled step)", engine)):
        achieved = rate * flops / 1e9
        print(f"{name:45s} {rate:9.0f} cell-steps/s  {achieved:6.1f} GFLOP/s "
              f"({100 * achieved / gemm:4.1f}% of GEMM)")
    speedup = engine / baseline
    print(f"speedup: {speedup:.2f}")
    return speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--objective", default="classification", choices=["classification", "regression"])
    parser.add_argument("--cells", type=int, default=None, help="cells (default 84, quick 42)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 2000, quick 300)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: cores)")
    args = parser.parse_args()
    args.cells = args.cells or (42 if args.quick else 84)
    args.steps = args.steps or (300 if args.quick else 2000)
    run(args)


if __name__ == "__main__":
    main()
