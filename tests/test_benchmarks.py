"""The engine benchmark: the FLOP count behind its GFLOP/s, and its command line (tiny run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from grokking import ensemble
from grokking.data import toy_split
from grokking.trainer import EngineSettings
from grokking.tasks.toy_trainer import ToyShardTrainer
from grokking.grid import study_cells
from grokking.mnist import N_PIXELS, build_mnist_model
from grokking.models import build_toy_model
from grokking.toy_step import toy_loss, train_step_function
from tests.conftest import study_with

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from engine import MATMUL_OPS, matmul_flops_per_cell_step, step_products  # noqa: E402  (benchmarks/ is not a package)
from mnist import matmul_flops_per_cell  # noqa: E402
from modular import forward_flops_per_sequence, make_study, training_rows  # noqa: E402


@pytest.mark.parametrize("name", ["toy_cls", "toy_regr"])
def test_flop_count_is_what_a_training_step_multiplies(config, name):
    """The benchmark's FLOPs per cell-step equal what PyTorch's FLOP counter sees in one engine step
    (forward on train + validation rows, written-out backward on the train rows)."""
    study = study_with(config, name)
    split = toy_split(study["p"], study["train_size"], study["regression_dim"], 42)
    arch = ensemble.toy_architecture("tanh")
    params = ensemble.stack_toy_models([build_toy_model(study, "tanh", 102)], torch.float32, torch.device("cpu"))
    pairs = torch.cat([split.x_train, split.x_val])[None]
    labels = torch.cat([split.y_train, split.y_val])[None]
    classification = study["objective"] == "classification"
    targets = torch.zeros(1, 0, 0) if classification else split.targets[None].float()
    n_train = len(split.y_train)
    with FlopCounterMode(display=False) as counter:
        activations = ensemble.forward_with_activations(arch, params, ensemble.one_hot_pairs(pairs, study["p"], torch.float32))
        _, grad_out, _ = toy_loss(activations[-1], labels, targets, n_train, classification)
        ensemble.backward(arch, params, activations, grad_out, n_train)
    counted = counter.get_total_flops()
    # The formula also counts the embedding's input gradient (2 x 45 x p x d), which nobody needs.
    assert counted == pytest.approx(matmul_flops_per_cell_step(study), rel=1e-3)


def test_mnist_flop_count_is_what_a_reference_step_multiplies(config):
    """One step of the reference MLP (forward and backward on a batch, no gradient for the images) and
    one evaluation forward: what benchmarks/mnist.py divides by the time."""
    study = study_with(config, "mnist", budget=1)
    model = build_mnist_model(study, "relu", 0, torch.float64)
    batch, n_eval = torch.rand(study["batch_size"], N_PIXELS, dtype=torch.float64), 37
    with FlopCounterMode(display=False) as counter:
        model(batch).pow(2).mean().backward()
        with torch.no_grad():
            model(torch.rand(n_eval, N_PIXELS, dtype=torch.float64))
    assert counter.get_total_flops() == matmul_flops_per_cell(study, n_eval)


def test_quick_benchmark_runs_and_ends_with_the_speedup():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--cells", "4", "--steps", "20",
         "--rounds", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup: \d+\.\d\d", lines[-1]), lines[-1]
    assert any("% of GEMM" in line and line.startswith("engine (") for line in lines), run.stdout
    assert any("% of GEMM" in line and line.startswith("the same products alone") for line in lines), run.stdout
    assert any(re.search(r"\d\.\d\dx the engine's fused step", line) and line.startswith("generic path")
               for line in lines), run.stdout


def test_products_replayed_alone_are_the_ones_the_compiled_step_calls(config):
    """The benchmark's products-alone ceiling replays the library products of the uncompiled step;
    one compiled step must call exactly these (same ops, same operand shapes)."""
    study = study_with(config, "toy_cls", log_every=0)
    cells = study_cells(study).iloc[:2]

    def as_key(name: str, shapes: list) -> tuple[str, list]:
        """The op and its two matrices (baddbmm's first operand is the bias; out= buffers are extra)."""
        matrices = shapes[1:3] if name in ("baddbmm", "addmm") else shapes[:2]
        return name, [list(s) for s in matrices]

    replayed = sorted(as_key(func.overloadpacket.__name__, [a.shape for a in args if isinstance(a, torch.Tensor)])
                      for func, args, _ in step_products(study, cells))
    trainer = ToyShardTrainer(study, cells, EngineSettings(stop_early=False))
    step = train_step_function(compile=True)
    trainer.take_step(step, 1)  # compiles
    with torch.profiler.profile(record_shapes=True) as prof:
        trainer.take_step(step, 2)
    called = sorted(as_key(e.name.removeprefix("aten::"), e.input_shapes) for e in prof.events()
                    if e.name in MATMUL_OPS)
    assert called == replayed


@pytest.mark.parametrize("sizes", [dict(p=41, width=128, layers=2, heads=4, batch=64),
                                   dict(p=7, width=16, layers=3, heads=2, batch=8)])
def test_modular_flop_count_is_what_a_step_and_an_evaluation_multiply(sizes):
    """benchmarks/modular.py's FLOPs: a training step is 3x the forward of its batch (the last block
    at the last position only), an evaluation one forward of each equation."""
    import argparse

    from torch.nn import functional as F

    from grokking.modular import build_decoder, modular_split

    args = argparse.Namespace(train_fraction=0.5, dtype="float32", **sizes)
    study = make_study(args, 1, 100)
    split = modular_split(study["p"], "add", 2, study["train_fraction"], 0)
    model = build_decoder(study, 0)
    batch = split.x_train[: args.batch], split.y_train[: args.batch]
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(batch[0]), batch[1]).backward()
    with FlopCounterMode(display=False) as evaluation, torch.no_grad():
        model(split.x_val)
    assert step.get_total_flops() == 3 * args.batch * forward_flops_per_sequence(study)
    assert evaluation.get_total_flops() == len(split.y_val) * forward_flops_per_sequence(study)
    n = len(split.y_train)  # an epoch's last batch is smaller
    assert training_rows(study, n, 2 * -(-n // args.batch)) == 2 * n


def test_modular_benchmark_runs_and_ends_with_the_speedup():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "modular.py"), "--p", "7", "--width", "16", "--heads", "2",
         "--batch", "8", "--steps", "10", "--members", "2", "--no-compile", "--threaded-members",
         "--gemm-size", "256"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup: \d+\.\d\d", lines[-1]), lines[-1]
    for way in ("baseline (", "engine (2 shards side by side)"):
        assert any(line.strip().startswith(way) and "updates/s" in line for line in lines), way
