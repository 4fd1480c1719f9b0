"""What both benchmarks share: single-threaded worker processes that start their timed work
together, and the fp32/fp64 GEMM rate measured the same way, as the ceiling to compare against."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Callable

import torch

_start_together = None  # a Barrier shared by the worker processes
ARRIVAL_TIMEOUT_S = 600  # a worker that failed before the barrier breaks it instead of hanging the rest


def _init_worker(barrier) -> None:
    global _start_together
    _start_together = barrier
    torch.set_num_threads(1)


def worker_pool(workers: int):
    """One single-threaded process per worker (spawned: no state inherited), kept for the whole run so
    each compiles once."""
    ctx = mp.get_context("spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(ctx.Barrier(workers),))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_together(fn: Callable[[], object]) -> float:
    """Time ``fn`` once every worker is ready, so the timed parts run side by side. A process blocks
    here until all have arrived, so with one job per worker none can take a second job."""
    _start_together.wait(ARRIVAL_TIMEOUT_S)
    return timed(fn)


def gemm_worker(job: tuple[int, torch.dtype]) -> float:
    """Best-of-5 single-threaded GEMM rate (GFLOP/s) of one process, run in every worker at once:
    the ceiling each training process is measured against, under the same load."""
    n, dtype = job
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    _start_together.wait(ARRIVAL_TIMEOUT_S)
    best = min(timed(lambda: a @ b) for _ in range(5))
    return 2 * n**3 / best / 1e9


def gemm_rate(pool, workers: int, dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """The machine's GEMM rate with every worker busy: the sum of the workers' rates."""
    return sum(pool.map(gemm_worker, [(n, dtype)] * workers, chunksize=1))
