"""Modular-arithmetic training throughput: the stacked engine against the public code's one-model loop.

Both train the same members (decoder transformers on x + y mod p, one model seed each, lr 1e-3,
weight decay 1) for the same number of steps, with the same batch order (``modular.epoch_order``)
and the same evaluations (the study's default schedule: every 10 steps to 200, 25 to 1000, ...;
at each, accuracy and loss on the whole train and validation split, parameter and attention norms):
(a) baseline: per member one ``modular.Decoder`` with ``torch.optim.AdamW`` and the warm-up
    ``LambdaLR`` (the public code's loop, as tests/test_modular.py's ``plain_loop``), the members
    spread over one single-threaded process per core;
(b) engine, side by side: the members as shards of M (``ModularShardTrainer``: vmap-stacked
    members, the compiled stacked step, batched AdamW), one shard per single-threaded process per core, as the
    pipeline runs its shard jobs (``--threads 1`` each);
(c) engine, threaded: the same shards one after another in one process with
    ``torch.set_num_threads(cores)``; by default at M = 8 only (``--threaded-members``), since on
    this busy machine it ran at a third to a half of the baseline's rate.
With M members per shard every way trains cores x M members. The speedup is (b) over (a): the
side-by-side engine, which was the faster here ((c) is printed beside it where run).

Two comparisons per M. Whole run: what a user pays for the run (building the models and the
optimizer, training, the evaluations of the default schedule; the engine's one-off compilation is
done before the timing, in every process, and printed apart: 20-60 s per process and shard size here,
once per shard job in the pipeline). Training alone: the same run less the time spent inside the
evaluations (each process times its evaluations and subtracts them; no second run). The default
schedule evaluates densely early (10 evaluations in the first 100 steps, 20 in 200, 52 in 1000, 152
in 3e4), so evaluation weighs far more in a short benchmark than over the papers' 3e4 steps; the
"30,000 steps" column projects the whole run to that budget from the measured per-step and
per-evaluation costs (training-alone time / steps, evaluation time / evaluations).

Rates are member-updates per second (members x steps / seconds). GFLOP/s counts the matrix products
the run needs (analytic, checked against torch's FlopCounterMode by tests/test_benchmarks.py): per
sequence of T = 4 tokens the blocks' projections, MLP and attention products, where the last block
computes queries, output projection and MLP at the last position only (2.18 MFLOP forward at the
default sizes); a training step is 3x the forward of its batch (gradients of inputs and weights;
394 MFLOP per member-update on average, an epoch's last batch being smaller), an evaluation one
forward of every equation (3.67 GFLOP per member). It is compared against the machine's fp32 GEMM
rate (one single-threaded 2048^3 torch.matmul per process, all at once, summed, as
benchmarks/engine.py) and against one step's own products (recorded with their shapes and strides,
baseline and engine at that M) replayed back to back in every process at once: the most a step made
of products of these shapes can reach.

Denormals: the engine flushes them while it trains; the baseline does not, as the public code does
not (``--flush-baseline`` makes it flush). The baseline counts the subnormal numbers in its members'
parameters and AdamW moments at the end of each run and the benchmark prints the total: 0 in every
run here, and 0 at every 500th step of a 6000-step run at p = 41 (parameters, gradients, moments),
so at these sizes flushing would not change the baseline's speed and was not measured separately.

Measured on this 2-core machine on 2026-11-28 at load 1-2 (nothing else running), with the
compiled stacked step (``torch.func.grad_and_value`` under ``vmap``, ``torch.compile``), the default
run (100 steps, 10 evaluations; 8 minutes), member-updates/s:

                     whole run (100 steps)      training alone         30,000 steps
    M per shard   baseline  engine  speedup   baseline  engine  speedup   (projected)
         1          97.9    117.3    1.20x     151.6    218.9    1.44x      1.42x
         8          80.2    147.0    1.83x     122.4    296.0    2.42x      2.36x
        32          78.1    157.5    2.02x     119.1    336.8    2.83x      2.75x

Matrix products, training alone: the baseline 16-19 % of the GEMM rate (274-319 GFLOP/s for the two
processes), the engine 28 / 40 / 48 % at M = 1 / 8 / 32; one step's own products replayed back to
back reach 50-59 % in the baseline's shapes and 42 / 55 / 68 % in the engine's. The compiled step is
within 70 % of what its products alone allow at M = 32, so the rest of a step (AdamW about 10 %,
the loss, copies) is now a third of it, where it was more than half eager. The 3x target of the issue
is met nowhere and nearly at M = 32 (2.83x training alone); 60 % of the GEMM rate over the whole step
is not reachable with these shapes (the products alone reach 42-68 %), so 48 % is the figure.

Before the step was compiled (same day, load 4-6.6, eager vmap + autograd): training alone 0.85x /
1.48x / 1.94x, whole run 0.84x / 1.19x / 1.17x at M = 1 / 8 / 32, 10-26 % of GEMM. What compiling
changed (one core, M = 8, batch 64, p = 41): forward + backward 65.7 -> 48.4 ms eager vs compiled,
optimizer 17.8 -> 4.1 ms (the eager benchmark ran the eager update), evaluation 17.3 -> 9.4 s per
200-step run; at M = 1 the step went from 22.8 to 8.3 ms. Compiling costs 26-48 s per process and
shard size here (``compile warm-up``), which is why shards that push fewer than 20,000 x 64 equations
stay eager (``COMPILE_FROM_EQUATIONS``).

Evaluations are half of the engine's short run (46-53 %): the default schedule evaluates densely
early, and an evaluation measures the whole splits (3.67 GFLOP per member). Over a 3e4-step run they
are a small share, and the projected speedup is close to the training-alone one. The threaded
engine (one process, 2 threads) ran at a third to a half of the baseline on a busy machine earlier
the same day: side by side is the engine's figure.

Shared machines drift by tens of per cent within minutes; each M measures the GEMM rate, the
baseline and the engine back to back, and with ``--rounds`` > 1 the summary takes each one's best
round. The last line is exactly ``speedup: X.XX`` (whole run, side by side, at the largest M).

    python benchmarks/modular.py --quick      # M = 8, 50 steps: 2.5 minutes on 2 idle cores
    python benchmarks/modular.py              # M = 1, 8, 32, 100 steps: 8 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from grokking.config import validate_config
from grokking.grid import study_cells
from grokking.modular import attention_norm_names, build_decoder, epoch_order, modular_split
from grokking.schedule import eval_steps
from grokking.tasks import modular_trainer
from grokking.tasks.modular_trainer import EVAL_ROWS, ModularShardTrainer
from grokking.trainer import DTYPES, EngineSettings
from workers import gemm_rate, timed_together, worker_pool

PRODUCT_OPS = (torch.ops.aten.bmm, torch.ops.aten.baddbmm, torch.ops.aten.mm, torch.ops.aten.addmm)
WARMUP_STEPS = 20
PAPERS_BUDGET = 30_000


# ----------------------------------------------------------------------------------------- set-up
def make_study(args: argparse.Namespace, members: int, steps: int) -> dict:
    """The benchmark's study: ``members`` model seeds of one (lr, wd), the default evaluation schedule."""
    return validate_config({"engine": {}, "figures": {}, "studies": {"m": {
        "task": "modular", "p": args.p, "train_fraction": args.train_fraction, "budget": steps,
        "batch_size": args.batch, "dtype": args.dtype, "loss_dtype": args.dtype,
        "model": {"width": args.width, "layers": args.layers, "heads": args.heads},
        "grid": {"lr": {"values": [1e-3]}, "wd": {"values": [1.0]}}, "model_seeds": list(range(members)),
    }}})["studies"]["m"]


def forward_flops_per_sequence(study: dict) -> int:
    """Matrix-product FLOPs of one sequence's forward (answer logits only)."""
    model = study["model"]
    d, layers, T, f = model["width"], model["layers"], 2 * study["arity"], 4 * model["width"]
    vocab = study["p"] + 2
    full_block = 4 * 2 * T * d * d + 2 * 2 * T * d * f + 2 * 2 * T * T * d  # q k v o, MLP, scores + mix
    last_block = 2 * 2 * T * d * d + 2 * 2 * d * d + 2 * 2 * d * f + 2 * 2 * T * d  # k v; q o, MLP at 1
    return (layers - 1) * full_block + last_block + 2 * d * vocab


def training_rows(study: dict, n_train: int, steps: int) -> int:
    """Sequences a member trains on in ``steps`` steps (the last batch of an epoch is smaller)."""
    batch = study["batch_size"] or n_train
    per_epoch = -(-n_train // batch)
    return sum(min(batch, n_train - ((s - 1) % per_epoch) * batch) for s in range(1, steps + 1))


# ----------------------------------------------------------------------------------------- baseline
def _subnormals(tensors) -> int:
    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((t != 0) & (t.abs() < tiny)).sum()) for t in tensors if t.is_floating_point())


@torch.no_grad()
def _evaluate_alone(model, split, study: dict, names: list[list[str]]) -> dict:
    """What the engine measures at an evaluation, for one module: accuracy and mean loss on the
    whole train and validation split (in chunks of EVAL_ROWS), the parameter norm, the attention norms."""
    model.eval()
    out = {}
    for key, x, y in (("train", split.x_train, split.y_train), ("val", split.x_val, split.y_val)):
        correct, loss = 0, 0.0
        for xs, ys in zip(x.split(EVAL_ROWS), y.split(EVAL_ROWS)):
            logits = model(xs)
            correct += int((logits.argmax(-1) == ys).sum())
            loss += F.cross_entropy(logits, ys, reduction="sum").item()
        out[f"{key}_acc"], out[f"{key}_loss"] = correct / len(y), loss / len(y)
    state = dict(model.named_parameters())
    out["param_norm"] = math.sqrt(sum(p.double().pow(2).sum().item() for p in state.values()))
    out["attn_norm"] = [[state[n].norm().item() for n in layer] for layer in names]
    model.train()
    return out


def train_alone(study: dict, cell: dict, split) -> tuple[float, float, int]:
    """One member trained as the public code does: (seconds, seconds inside evaluations, subnormal
    numbers in its parameters and AdamW moments at the end)."""
    started = time.perf_counter()
    model = build_decoder(study, int(cell["model_seed"])).to(DTYPES[study["dtype"]])
    opt = study["optimizer"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cell["lr"], betas=tuple(opt["betas"]), eps=opt["eps"],
                                  weight_decay=cell["wd"])
    warmup = opt["warmup_steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(s / warmup, 1) if warmup else 1.0)
    n, batch = len(split.y_train), study["batch_size"] or len(split.y_train)
    per_epoch = -(-n // batch)
    checkpoints = set(eval_steps(0, study["budget"], study["eval"]))
    names = attention_norm_names(study["model"]["layers"])
    eval_s = 0.0
    for step in range(1, study["budget"] + 1):
        epoch, position = divmod(step - 1, per_epoch)
        if position == 0:
            order = epoch_order(n, study["batch_seed"], cell["model_seed"], epoch)
        rows = order[position * batch:(position + 1) * batch]
        loss = F.cross_entropy(model(split.x_train[rows]), split.y_train[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step in checkpoints:
            start = time.perf_counter()
            _evaluate_alone(model, split, study, names)
            eval_s += time.perf_counter() - start
    state = [t for p in model.parameters() for t in (p, *optimizer.state[p].values())]
    return time.perf_counter() - started, eval_s, _subnormals(state)


def _baseline_worker(job: tuple) -> tuple[float, float, int]:
    """Members one after another in this single-threaded process: (seconds, seconds inside
    evaluations, subnormals at the end)."""
    study, cells, flush = job
    split = modular_split(study["p"], study["operation"], study["arity"], study["train_fraction"], 0)
    torch.set_flush_denormal(flush)
    train_alone({**study, "budget": WARMUP_STEPS}, cells[0], split)  # first-call overheads
    results = []
    timed_together(lambda: results.extend(train_alone(study, cell, split) for cell in cells))
    torch.set_flush_denormal(False)
    return (sum(r[0] for r in results), sum(r[1] for r in results), sum(r[2] for r in results))


# ----------------------------------------------------------------------------------------- engine
def _engine_shard(study: dict, cells, split, compile: bool = True) -> tuple[float, float]:
    """One shard as the pipeline trains it: (seconds, seconds inside evaluations)."""
    started = time.perf_counter()
    trainer = ModularShardTrainer(study, cells, {0: split}, EngineSettings(device="cpu", compile=compile,
                                                                           stop_early=False))
    evaluate, eval_s = trainer._evaluate, [0.0]

    def timed_evaluate(step: int) -> None:
        start = time.perf_counter()
        evaluate(step)
        eval_s[0] += time.perf_counter() - start

    trainer._evaluate = timed_evaluate
    trainer.run()
    return time.perf_counter() - started, eval_s[0]


def _engine_worker(job: tuple) -> tuple[float, float, float]:
    """Shards one after another in this process with ``threads`` threads: (seconds, seconds inside
    evaluations, seconds of the warm-up that compiles)."""
    study, shards, threads, compile = job
    torch.set_num_threads(threads)
    # The pipeline compiles shards of 3e4-step runs, which the benchmark projects to; its own short
    # runs fall below the threshold, so it is lifted here.
    modular_trainer.COMPILE_FROM_EQUATIONS = 0
    split = modular_split(study["p"], study["operation"], study["arity"], study["train_fraction"], 0)
    start = time.perf_counter()
    _engine_shard({**study, "budget": WARMUP_STEPS}, shards[0], split, compile)  # compiles outside the timing
    warmup_s = time.perf_counter() - start
    results = []
    timed_together(lambda: results.extend(_engine_shard(study, cells, split, compile) for cells in shards))
    torch.set_num_threads(1)
    return sum(r[0] for r in results), sum(r[1] for r in results), warmup_s


# ----------------------------------------------------------------------------------------- products
class _RecordProducts(TorchDispatchMode):
    """The matrix products run under it: op name, operand shapes and strides, dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in PRODUCT_OPS:
            layout = [(a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((f"{func.overloadpacket.__name__}.{func._overloadname}", layout))  # picklable
        return func(*args, **(kwargs or {}))


def _product_flops(name: str, layout) -> int:
    a, b = layout[1:3] if name.split(".")[0] in ("addmm", "baddbmm") else layout[:2]
    return 2 * math.prod(a[0]) * b[0][-1]


def _record_step(study: dict, members: int) -> list[tuple]:
    """The products of one training step: the plain module's (members 0) or an engine shard's."""
    split = modular_split(study["p"], study["operation"], study["arity"], study["train_fraction"], 0)
    recorder = _RecordProducts()
    if members == 0:
        model = build_decoder(study, 0).to(DTYPES[study["dtype"]])
        rows = torch.arange(study["batch_size"] or len(split.y_train))
        with recorder:
            F.cross_entropy(model(split.x_train[rows]), split.y_train[rows]).backward()
        return recorder.calls
    steps = 10
    shard = {**study, "budget": steps, "eval": {"strides": [{"every": steps, "until": steps}]}}
    trainer = ModularShardTrainer(shard, study_cells(shard).iloc[:members], {0: split},
                                  EngineSettings(device="cpu", compile=False, stop_early=False))
    trainer._evaluate = lambda step: None
    with recorder:
        trainer.run()
    return recorder.calls[: len(recorder.calls) // steps]  # every step has the same products


def _operand(layout: tuple) -> torch.Tensor:
    """Random numbers with the recorded shape and strides (expanded and transposed views included)."""
    shape, stride, dtype = layout
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    return torch.randn(size, dtype=dtype).as_strided(shape, stride)


def _products_worker(job: tuple) -> float:
    """GFLOP/s of one step's products replayed back to back in this process (best of 5)."""
    calls, repeats = job
    replayed = [(getattr(getattr(torch.ops.aten, name.split(".")[0]), name.split(".")[1]),
                 [_operand(lay) if isinstance(lay, tuple) else lay for lay in layout]) for name, layout in calls]
    flops = sum(_product_flops(name, layout) for name, layout in calls) * repeats

    def replay() -> None:
        for _ in range(repeats):
            for func, args in replayed:
                func(*args)

    replay()
    return flops / min(timed_together(replay) for _ in range(5)) / 1e9


def products_rate(pool, workers: int, study: dict, members: int) -> float:
    """The step's products replayed in every worker at once: the sum of their GFLOP/s."""
    calls = _record_step(study, members)
    flops = sum(_product_flops(name, layout) for name, layout in calls)
    repeats = max(1, min(50, round(2e9 / flops)))  # about 2 GFLOP per timing
    return sum(pool.map(_products_worker, [(calls, repeats)] * workers, chunksize=1))


# ----------------------------------------------------------------------------------------- run
def measure(pool, threaded_pool, args: argparse.Namespace, M: int) -> dict:
    """One round at M members per shard: GEMM rate, baseline, engine side by side (and threaded)."""
    workers = args.cores
    study = make_study(args, M * workers, args.steps)
    cells = study_cells(study)
    records = cells.to_dict("records")
    shards = [cells.iloc[i * M:(i + 1) * M] for i in range(workers)]
    result = {"gemm": gemm_rate(pool, workers, n=args.gemm_size)}
    baseline = pool.map(_baseline_worker, [(study, records[i::workers], args.flush_baseline)
                                           for i in range(workers)], chunksize=1)
    result["baseline"] = (max(b[0] for b in baseline), max(b[0] - b[1] for b in baseline))
    result["subnormals"] = sum(b[2] for b in baseline)
    engine = pool.map(_engine_worker, [(study, [s], 1, args.compile) for s in shards], chunksize=1)
    result["engine"] = (max(e[0] for e in engine), max(e[0] - e[1] for e in engine))
    result["eval_share"] = float(np.mean([e[1] / e[0] for e in engine]))
    result["compile"] = max(e[2] for e in engine)
    if threaded_pool is not None and M in args.threaded_members:
        total, eval_s, _ = threaded_pool.map(_engine_worker, [(study, shards, workers, args.compile)])[0]
        result["threaded"] = (total, total - eval_s)
    return result


def project(seconds_whole: float, seconds_train: float, study: dict, budget: int) -> float:
    """Whole-run seconds of a ``budget``-step run from a measured run: per-step and per-evaluation
    costs times the steps and evaluations of the default schedule over ``budget``."""
    per_step = seconds_train / study["budget"]
    per_eval = (seconds_whole - seconds_train) / len(eval_steps(0, study["budget"], study["eval"]))
    return budget * per_step + len(eval_steps(0, budget, study["eval"])) * per_eval


def run(args: argparse.Namespace) -> float:
    workers = args.cores
    study = make_study(args, 1, args.steps)
    split = modular_split(study["p"], study["operation"], study["arity"], study["train_fraction"], 0)
    n_train, n_val = len(split.y_train), len(split.y_val)
    n_evals = len(eval_steps(0, args.steps, study["eval"]))
    forward = forward_flops_per_sequence(study)
    train_flops = 3 * forward * training_rows(study, n_train, args.steps)  # per member, whole run
    eval_flops = forward * (n_train + n_val) * n_evals
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (1, 5, 15 min); {workers} single-threaded "
          f"processes")
    print(f"x + y mod {args.p}: {n_train} train / {n_val} validation equations, batch {args.batch}, width "
          f"{args.width}, {args.layers} layers, {args.heads} heads, {args.dtype}; {args.steps} steps per "
          f"member, default evaluation schedule ({n_evals} evaluations)")
    print(f"matrix products: {forward / 1e6:.2f} MFLOP per sequence forward, "
          f"{train_flops / args.steps / 1e6:.0f} MFLOP per member-update, "
          f"{forward * (n_train + n_val) / 1e6:.0f} MFLOP per evaluation of a member")
    print(f"baseline: Decoder + torch.optim.AdamW + LambdaLR per member, denormals "
          f"{'flushed' if args.flush_baseline else 'not flushed (as the public code)'}")
    rows = []
    threaded_pool = worker_pool(1) if args.threaded_members else None
    try:
        with worker_pool(workers) as pool:
            for M in args.members:
                rounds = [measure(pool, threaded_pool, args, M) for _ in range(args.rounds)]
                best = lambda key, i: min(r[key][i] for r in rounds)  # noqa: E731  (seconds)
                gemm = max(r["gemm"] for r in rounds)
                updates = M * workers * args.steps
                products = {"baseline": products_rate(pool, workers, study, 0),
                            "engine": products_rate(pool, workers, make_study(args, M, args.steps), M)}
                print(f"\nM = {M} members per shard: {M * workers} members; fp32 GEMM {gemm:.1f} GFLOP/s "
                      f"({workers} processes x one {args.gemm_size}^3 torch.matmul); one step's products alone, back "
                      f"to back: baseline's {products['baseline']:.1f}, engine's {products['engine']:.1f} "
                      f"GFLOP/s ({100 * products['baseline'] / gemm:.0f} %, "
                      f"{100 * products['engine'] / gemm:.0f} % of GEMM)")
                print(f"  {'':44s} {'whole run (train + eval)':>36s}   {'training alone':>30s}")
                ways = [("baseline", f"baseline ({workers} processes)"),
                        ("engine", f"engine ({workers} shards side by side)")]
                threaded = M in args.threaded_members
                if threaded:
                    ways.append(("threaded", f"engine (shards in turn, {workers} threads)"))
                line = {}
                for key, name in ways:
                    whole, train = best(key, 0), best(key, 1)
                    line[key] = (updates / whole, updates / train)
                    gf_whole = M * workers * (train_flops + eval_flops) / whole / 1e9
                    gf_train = M * workers * train_flops / train / 1e9
                    print(f"  {name:44s} {updates / whole:8.1f} updates/s {gf_whole:6.1f} GFLOP/s "
                          f"({100 * gf_whole / gemm:3.0f} %)   {updates / train:8.1f} updates/s "
                          f"{gf_train:6.1f} GFLOP/s ({100 * gf_train / gemm:3.0f} %)")
                projected = {key: updates / args.steps * PAPERS_BUDGET / project(best(key, 0), best(key, 1), study,
                                                                                PAPERS_BUDGET)
                             for key, _ in ways}
                speedup = (line["engine"][0] / line["baseline"][0], line["engine"][1] / line["baseline"][1])
                print(f"  speedup, engine side by side: whole run {speedup[0]:.2f}x, training alone "
                      f"{speedup[1]:.2f}x, {PAPERS_BUDGET:,}-step run (projected: "
                      f"{len(eval_steps(0, PAPERS_BUDGET, study['eval']))} evaluations) "
                      f"{projected['engine'] / projected['baseline']:.2f}x"
                      + (f"; threaded engine: {line['threaded'][0] / line['baseline'][0]:.2f}x, "
                         f"{line['threaded'][1] / line['baseline'][1]:.2f}x" if threaded else ""))
                print(f"  engine: evaluation {100 * np.mean([r['eval_share'] for r in rounds]):.0f} % of its "
                      f"whole run; compile warm-up ({WARMUP_STEPS} steps) {max(r['compile'] for r in rounds):.1f} s "
                      f"per process; baseline subnormals at the end: {rounds[-1]['subnormals']}")
                rows.append((M, line, speedup, projected["engine"] / projected["baseline"]))
    finally:
        if threaded_pool is not None:
            threaded_pool.close()
            threaded_pool.join()
    print(f"\nsummary (member-updates/s, best of {args.rounds} round(s); load average now "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}):")
    print(f"  {'':4s} {'whole run (' + str(args.steps) + ' steps)':^30s}   {'training alone':^30s}   "
          f"{f'{PAPERS_BUDGET:,} steps':>10s}")
    print(f"  {'M':>4s} {'baseline':>10s} {'engine':>10s} {'speedup':>8s}   {'baseline':>10s} {'engine':>10s} "
          f"{'speedup':>8s}   {'projected':>10s}")
    for M, line, speedup, projected in rows:
        print(f"  {M:4d} {line['baseline'][0]:10.1f} {line['engine'][0]:10.1f} {speedup[0]:7.2f}x   "
              f"{line['baseline'][1]:10.1f} {line['engine'][1]:10.1f} {speedup[1]:7.2f}x   {projected:9.2f}x")
    print(f"speedup: {rows[-1][2][0]:.2f}")
    return rows[-1][2][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under 3 minutes on 2 busy cores")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="processes / threads (default: cores)")
    parser.add_argument("--members", type=int, nargs="+", default=None,
                        help="members per shard (default 1 8 32, quick 8)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per member, an evaluation step of the default schedule (default 100, quick 50)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per M, best one counts (default 1)")
    parser.add_argument("--threaded-members", type=int, nargs="*", default=None,
                        help="M at which to also run the engine in one process of --cores threads "
                             "(default: 8 when measured; quick: none)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="the engine's compiled step and AdamW update (default on, as the pipeline)")
    parser.add_argument("--flush-baseline", action="store_true", help="flush denormals in the baseline too")
    parser.add_argument("--gemm-size", type=int, default=2048, help="n of the n^3 GEMM that sets the ceiling")
    parser.add_argument("--p", type=int, default=41)
    parser.add_argument("--train-fraction", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    args = parser.parse_args()
    args.members = args.members or ([8] if args.quick else [1, 8, 32])
    args.steps = args.steps or (50 if args.quick else 100)
    if args.threaded_members is None:
        args.threaded_members = [] if args.quick else [m for m in args.members if m == 8]
    run(args)


if __name__ == "__main__":
    main()
