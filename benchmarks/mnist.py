"""MNIST training throughput: the engine against the report's one-model-per-process loop.

Both train the same cells of the report's MNIST grid for the same number of steps (early stopping
off, one evaluation at the last step), in float64 (the report's) and float32, using every core:
(a) baseline: one nn.Module with torch.optim.AdamW per cell (grokking.mnist_reference, the public
    code's way), cells spread over one single-threaded process per core;
(b) engine: the cells as stacked shards sharing each minibatch, one single-threaded process per core.
Prints cell-steps per second and milliseconds per cell-step of each, so users can plan a grid:
a cell of 1e5 steps costs 1e5 x (ms per cell-step) on one core. Also the GFLOP/s of the matrix
products against the machine's GEMM rate in the same dtype, measured the same way (one
single-threaded 2048^3 GEMM per worker process, all at once): MNIST's products are large, so
they dominate both ways (measured: engine 56 %, baseline 36-44 % of GEMM) and the engine's gain
is small.

    python benchmarks/mnist.py --quick        # about a minute on 2 cores
    python benchmarks/mnist.py                # a few minutes
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from grokking.config import validate_config
from grokking.trainer import EngineSettings
from grokking.grid import study_cells
from grokking.mnist import N_CLASSES, N_PIXELS, prepare_mnist
from grokking.tasks.mnist_trainer import train_mnist_shard
from grokking.mnist_reference import mnist_reference_run
from grokking.schedule import eval_steps
from workers import gemm_rate, timed_together, worker_pool

ROOT = Path(__file__).resolve().parents[1]


def matmul_flops_per_cell(study: dict, n_eval: int) -> float:
    """FLOPs of one cell's matrix products over the run: per step forward and backward on a batch
    (no gradient for the input images), plus one evaluation forward of ``n_eval`` images."""
    h, batch = study["hidden"], study["batch_size"]
    per_row = N_PIXELS * h + h * h + h * N_CLASSES
    per_step = 2 * batch * per_row * 2 + 2 * batch * (h * h + h * N_CLASSES)
    return study["budget"] * per_step + 2 * n_eval * per_row


def _baseline_worker(job: tuple) -> float:
    study, data, cells, steps = job
    mnist_reference_run({**study, "eval": {"every": 5, "until": 5, "every_after": 5}}, data, 1e-3, 1e-5, 0, 5,
                        early_stop=False)  # warm up

    def train_all() -> None:
        for lr, wd in cells:
            mnist_reference_run(study, data, lr, wd, 0, steps, early_stop=False)

    return timed_together(train_all)


def _engine_worker(job: tuple) -> float:
    study, data, cells, steps = job
    settings = EngineSettings(device="cpu", compile=True)
    warm = {**study, "budget": 5, "eval": {"every": 5, "until": 5, "every_after": 5}}
    train_mnist_shard(warm, cells, data, settings)  # compile outside the timing
    return timed_together(lambda: train_mnist_shard(study, cells, data, settings))


EVAL_EVERY = 10  # steps between evaluations in the run that prices one evaluation


def evaluation_overhead(engine_s: float, engine_eval_s: float, steps: int, schedule: dict,
                        budgets: tuple[int, ...]) -> dict[int, float]:
    """Evaluation time as a share of training time for runs of ``budgets`` steps under ``schedule``.

    One evaluation costs (engine_eval_s - engine_s) / (steps / EVAL_EVERY - 1): the difference of two
    runs of ``steps`` steps, one evaluating every EVAL_EVERY steps, the other once at the end.
    """
    per_eval = (engine_eval_s - engine_s) / (steps // EVAL_EVERY - 1)
    per_step = (engine_s - per_eval) / steps
    return {b: len(eval_steps(0, b, schedule)) * per_eval / (b * per_step) for b in budgets}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = prepare_mnist(args.root, data_seed=0, subset_size=1000, download=False)
    workers = args.workers
    n_eval = len(data.train_labels) + len(data.val_labels)
    print(f"machine: {os.cpu_count()} cores, {workers} single-threaded worker processes")
    with worker_pool(workers) as pool:
        for dtype in args.dtypes:
            config = validate_config({"engine": {}, "figures": {}, "studies": {"mnist": {
                "task": "mnist", "budget": args.steps, "dtype": dtype, "stop_early": False,
                "eval": {"every": args.steps, "until": args.steps, "every_after": args.steps},
                "grid": {"lr": {"scale": "log", "min": 1e-6, "max": 1.0, "num": 10},
                         "wd": {"scale": "log", "min": 1e-5, "max": 10.0, "num": 10}},
            }}})
            study = config["studies"]["mnist"]
            cells = study_cells(study).iloc[:: max(1, 100 // args.cells)].iloc[: args.cells]
            cell_steps = len(cells) * args.steps
            gemm = gemm_rate(pool, workers, getattr(torch, dtype))
            pairs = list(zip(cells["lr"], cells["wd"]))
            baseline_s = max(pool.map(_baseline_worker, [(study, data, pairs[i::workers], args.steps)
                                                         for i in range(workers)], chunksize=1))
            shards = [cells.iloc[idx] for idx in np.array_split(np.arange(len(cells)), workers)]
            engine_s = max(pool.map(_engine_worker, [(study, data, s, args.steps) for s in shards],
                                    chunksize=1))
            flops = matmul_flops_per_cell(study, n_eval) * len(cells)
            print(f"MNIST {dtype}: {len(cells)} cells x {args.steps} steps (batch 200, one evaluation of "
                  f"{n_eval:,} images at the end), early stopping off; {dtype} GEMM {gemm:.1f} GFLOP/s")
            for name, seconds in (("baseline (nn.Module + AdamW per cell)", baseline_s),
                                  (f"engine (shards of {len(shards[0])}, shared batches)", engine_s)):
                rate = cell_steps / seconds
                achieved = flops / seconds / 1e9
                print(f"  {name:45s} {rate:8.1f} cell-steps/s  {1000 * workers / rate:6.2f} ms per "
                      f"cell-step on one core  {achieved:5.1f} GFLOP/s ({100 * achieved / gemm:.0f}% of GEMM)")
            print(f"  speedup {dtype}: {baseline_s / engine_s:.2f}")
            dense = {**study, "eval": {"every": EVAL_EVERY, "until": args.steps, "every_after": EVAL_EVERY}}
            engine_eval_s = max(pool.map(_engine_worker, [(dense, data, s, args.steps) for s in shards],
                                         chunksize=1))
            default = validate_config({"engine": {}, "figures": {}, "studies": {"mnist": {
                "task": "mnist", "budget": 100_000, "grid": study["grid"]}}})["studies"]["mnist"]["eval"]
            shares = evaluation_overhead(engine_s, engine_eval_s, args.steps, default, (2000, 10_000, 100_000))
            print(f"  evaluation (train subset + validation set, engine) {dtype}: "
                  f"{1000 * (engine_eval_s - engine_s) / (args.steps // EVAL_EVERY - 1) / len(shards[0]):.1f} ms "
                  f"per cell; default schedule's cost as a share of training: "
                  + ", ".join(f"{100 * v:.0f} % over {b:,} steps" for b, v in shares.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, about a minute")
    parser.add_argument("--cells", type=int, default=None, help="cells (default 20, quick 8)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 500, quick 100)")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: cores)")
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "data"), help="MNIST root")
    args = parser.parse_args()
    args.cells = args.cells or (8 if args.quick else 20)
    args.steps = args.steps or (100 if args.quick else 500)
    run(args)


if __name__ == "__main__":
    main()
