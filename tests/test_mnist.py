"""MNIST: data from the idx files, the report's subset and init, and the engine against a plain loop."""

from __future__ import annotations

import gzip
import re
import random
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from grokking.config import ConfigError, validate_config
from grokking.trainer import EngineSettings
from grokking.grid import cell_id
from grokking.mnist import (
    MnistDataError, MnistMLP, batches, build_mnist_model, load_mnist, prepare_mnist, raw_folder,
    subset_indices,
)
from grokking.tasks.mnist_trainer import (
    MnistShardTrainer, count_above, mse_to_one_hot, train_mnist_shard,
)
from grokking.mnist_reference import mnist_reference_run
from grokking.schedule import eval_steps, is_eval_step, normalize_schedule
from tests.conftest import ROOT, load_config, study_with

SHARED_ROOT = (ROOT / ".." / "shared" / "data").resolve()  # the original idx files (no internet here)
EAGER = EngineSettings(device="cpu", compile=False, check_every=10)

pytestmark = pytest.mark.skipif(not raw_folder(SHARED_ROOT).exists(), reason="no MNIST files here")


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return prepare_mnist(SHARED_ROOT, data_seed=0, subset_size=1000, download=False)


def make_cells(pairs, model_seed=0) -> pd.DataFrame:
    return pd.DataFrame([
        {"cell_id": cell_id(lr, wd, 0, model_seed, "relu"), "lr": lr, "wd": wd, "data_seed": 0,
         "model_seed": model_seed, "activation": "relu"}
        for lr, wd in pairs
    ])


def t_or_none(value):
    return None if pd.isna(value) else int(value)


# ----------------------------------------------------------------------------- data
def test_loads_the_original_idx_files_offline_without_writing_there():
    before = sorted(p.name for p in raw_folder(SHARED_ROOT).iterdir())
    splits = load_mnist(SHARED_ROOT, download=False)
    images, labels = splits["train"]
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's first training labels
    assert splits["test"][0].shape == (10000, 28, 28) and splits["test"][1][:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in raw_folder(SHARED_ROOT).iterdir()) == before


def test_missing_files_name_the_folder_where_they_belong(tmp_path):
    with pytest.raises(MnistDataError, match=str(raw_folder(tmp_path))):
        load_mnist(tmp_path, download=False)


def test_a_corrupt_file_is_named(tmp_path):
    folder = raw_folder(tmp_path)
    shutil.copytree(raw_folder(SHARED_ROOT), folder)
    broken = folder / "t10k-labels-idx1-ubyte.gz"
    broken.chmod(0o644)
    broken.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(MnistDataError, match=f"corrupt MNIST file {broken}"):
        load_mnist(tmp_path, download=False)


def test_subset_is_the_first_numpy_draw_after_seeding_and_leaves_global_state_alone():
    np.random.seed(123)
    random.seed(5)
    before = np.random.get_state()[1].copy(), random.random()
    indices = subset_indices(0, 1000)
    # np.random.choice(60000, 1000, replace=False) after np.random.seed(0): a legacy permutation's head
    assert np.array_equal(indices, np.random.RandomState(0).permutation(60000)[:1000])
    assert len(set(indices.tolist())) == 1000 and np.array_equal(indices, subset_indices(0, 1000))
    assert not np.array_equal(indices, subset_indices(1, 1000))
    random.seed(5)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.random() == before[1]


def test_dataset_holds_the_subset_images_and_the_test_set(data):
    images, labels = load_mnist(SHARED_ROOT, download=False)["train"]
    assert torch.equal(data.train_images, images[data.indices].reshape(1000, 784))
    assert torch.equal(data.train_labels, labels[data.indices])
    assert data.val_images.shape == (10000, 784)


def test_batches_reshuffle_every_epoch_and_resume_mid_stream():
    stream = batches(1000, 200, seed=0)
    first = [next(stream) for _ in range(15)]  # three epochs
    for epoch in range(3):
        seen = torch.cat(first[5 * epoch:5 * epoch + 5])
        assert torch.equal(seen.sort().values, torch.arange(1000))
    assert not torch.equal(first[0], first[5])
    resumed = batches(1000, 200, seed=0, start_step=7)
    assert all(torch.equal(next(resumed), b) for b in first[7:])
    assert [len(b) for b in [next(batches(250, 100, 0, s)) for s in range(4)]] == [100, 100, 50, 100]


# ----------------------------------------------------------------------------- model, optimizer, loss
def test_every_initial_parameter_is_scaled_by_nine_from_a_float64_init(config):
    study = config["studies"]["mnist"]
    model = build_mnist_model(study, "relu", 0, torch.float64)
    # The public code: torch.set_default_dtype(float64); manual_seed(0); build; multiply by 9.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        plain = MnistMLP(200, "relu", torch.float64)
    finally:
        torch.set_default_dtype(default)
    pairs = list(zip(model.named_parameters(), plain.named_parameters()))
    assert len(pairs) == 6  # three weights and three biases
    for (name, scaled), (_, unscaled) in pairs:
        assert scaled.dtype == torch.float64
        torch.testing.assert_close(scaled, 9 * unscaled, rtol=0, atol=0, msg=name)


def test_parameter_groups_get_the_report_lr_and_wd(config, data):
    study = study_with(config, "mnist", budget=100)
    cells = make_cells([(1e-4, 1e-5), (0.5, 3.0)])
    trainer = MnistShardTrainer(study, cells, data, EAGER)
    opt = trainer.optimizer
    assert opt.groups == {"encoder": ("w0", "b0", "w1", "b1"), "decoder": ("w2", "b2")}
    assert opt.lr["encoder"].tolist() == [1e-3, 1e-3]
    assert opt.lr["decoder"].tolist() == [1e-4, 0.5]
    assert opt.weight_decay["encoder"].tolist() == opt.weight_decay["decoder"].tolist() == [1e-5, 3.0]
    assert trainer.params["w0"].shape == (2, 784, 200) and trainer.params["b2"].shape == (2, 1, 10)


def test_loss_is_mse_between_logits_and_one_hot_targets():
    out = torch.randn(3, 200, 10, dtype=torch.float64)
    labels = torch.randint(0, 10, (200,))
    one_hot = F.one_hot(labels, 10).double()
    expected = torch.stack([F.mse_loss(o, one_hot) for o in out])
    torch.testing.assert_close(mse_to_one_hot(out, one_hot), expected, rtol=1e-14, atol=0)


def test_threshold_is_strictly_above_and_the_older_schedule_form_keeps_its_meaning():
    assert count_above(0.6, 1000) == 601 and count_above(0.6, 10000) == 6001
    schedule = normalize_schedule({"every": 100, "until": 10000, "every_after": 500})
    steps = eval_steps(0, 100000, schedule)
    assert steps[:3] == [100, 200, 300] and 10000 in steps and 10500 in steps and 10100 not in steps
    assert len(steps) == 100 + 180 and is_eval_step(150000, schedule)


def test_default_schedule_is_dense_early_and_never_coarser_than_500_late(config):
    schedule = config["studies"]["mnist"]["eval"]
    steps = eval_steps(0, 300_000, schedule)
    assert steps == sorted(set(steps)) and all(is_eval_step(s, schedule) for s in steps)
    assert len(eval_steps(0, 100_000, schedule)) == 430
    assert max(b - a for a, b in zip(steps, steps[1:])) == 500
    # A run that first crosses the threshold after `exact` updates is recorded at the next evaluation:
    # below 2,000 steps that is within 5 steps or 2 % of the exact crossing step.
    for exact in range(1, 2001):
        recorded = next(s for s in steps if s >= exact)
        assert recorded - exact <= max(5, 0.02 * exact), exact
    # a continuation evaluates exactly where one uninterrupted run does
    assert eval_steps(100_000, 150_000, schedule) == [s for s in eval_steps(0, 150_000, schedule) if s > 100_000]


@pytest.mark.parametrize("schedule,message", [
    ({"strides": [{"every": 5, "until": 500}, {"every": 30, "until": 1000}]},
     "strides[1].until: 1000 is not 500 plus a multiple of every (30)"),
    ({"strides": [{"every": 5, "until": 500}], "every": 10}, "strides: give either"),
])
def test_a_malformed_schedule_is_named(schedule, message):
    raw = load_config()
    raw["studies"]["mnist"]["eval"] = schedule
    with pytest.raises(ConfigError, match=re.escape(f"config error at studies.mnist.eval.{message}")):
        validate_config(raw)


def test_running_train_accuracy_needs_evaluations_at_epoch_ends():
    raw = load_config()
    raw["studies"]["mnist"].update(train_accuracy="running", eval={"every": 3, "until": 300, "every_after": 100},
                                   budget=1000)
    with pytest.raises(ConfigError, match="train_accuracy: running accuracy is read at epoch ends"):
        validate_config(raw)


# ----------------------------------------------------------------------------- engine
# Cells across the report's grid: one that converges at the first evaluation, slow ones, wd > 0.
CELLS = [(1e-3, 1e-2), (1e-6, 1e-5), (0.1, 1e-9), (1.0, 1.0), (10.0, 1e-3)]


COARSE = {"strides": [{"every": 25, "until": 300}], "every_after": 500}  # fewer evaluations: a faster test


@pytest.mark.parametrize("train_accuracy", ["subset", "running"])
def test_engine_matches_plain_adamw_loop_in_float64(config, data, train_accuracy):
    steps = 300
    study = study_with(config, "mnist", budget=steps, eval=COARSE, train_accuracy=train_accuracy)
    result = train_mnist_shard(study, make_cells(CELLS), data, EAGER)
    state = result.end_state
    compared = 0
    for row in result.metrics.itertuples():
        ref = mnist_reference_run(study, data, row.lr, row.wd, 0, steps)
        assert (t_or_none(row.t_train), t_or_none(row.t_val)) == (ref.t_train, ref.t_val), row.cell_id
        assert row.steps_run == ref.steps
        assert row.final_train_acc == pytest.approx(ref.train_acc, abs=1e-12)
        assert row.final_val_acc == pytest.approx(ref.val_acc, abs=1e-12)
        if state is None or row.cell_id not in state["cell_ids"]:
            continue
        i = state["cell_ids"].index(row.cell_id)
        layers = [ref.model.encoder[0], ref.model.encoder[2], ref.model.decoder]
        for k, layer in enumerate(layers):
            torch.testing.assert_close(state["params"][f"w{k}"][i], layer.weight.detach().T, rtol=1e-7, atol=1e-9)
            torch.testing.assert_close(state["params"][f"b{k}"][i, 0], layer.bias.detach(), rtol=1e-7, atol=1e-9)
        compared += 1
    assert compared >= 3, "too few running cells to compare parameters"
    assert result.metrics["t_train"].notna().any(), "no cell converged: early stopping untested"


def test_continuing_equals_one_uninterrupted_run(config, data):
    study = study_with(config, "mnist", budget=200, dtype="float32", eval=COARSE | {"every_after": 25},
                       train_accuracy="running")
    cells = make_cells([(1e-3, 1e-2), (0.1, 1e-9), (1.0, 1.0)])
    first = train_mnist_shard(study, cells, data, EAGER)
    state = first.end_state
    running = cells[cells["cell_id"].isin(state["cell_ids"])].reset_index(drop=True)
    assert len(running) >= 2
    longer = {**study, "budget": 400}
    continued = train_mnist_shard(longer, running, data, EAGER, resume=state)
    whole = train_mnist_shard(longer, running, data, EAGER)
    pd.testing.assert_frame_equal(continued.metrics, whole.metrics)
    for key in ("params", "exp_avg", "exp_avg_sq"):
        for name, value in whole.end_state[key].items():
            assert torch.equal(continued.end_state[key][name], value), (key, name)
    for cid in running["cell_id"]:
        joined = torch.cat([first.history[cid]["val_acc"], continued.history[cid]["val_acc"]])
        assert torch.equal(joined, whole.history[cid]["val_acc"])


def test_a_fast_cell_of_the_extended_grid_generalizes_within_3000_steps(config, data):
    """Report's extended grid, decoder lr 0.129, wd 1e-9: the public results give T = (515, 965)."""
    study = study_with(config, "mnist_extended", budget=3000)
    result = train_mnist_shard(study, make_cells([(1.2915496650148828e-01, 1e-9)]), data, EAGER)
    row = result.metrics.iloc[0]
    print(f"T_train {row.t_train}, T_val {row.t_val}")
    assert row.t_train <= 3000 and row.t_val <= 3000
    assert row.final_train_acc > 0.6 and row.final_val_acc > 0.6


# ----------------------------------------------------------------------------- config
def test_mnist_config_defaults_are_the_report_settings(config):
    study = config["studies"]["mnist"]
    assert (study["dtype"], study["threshold"], study["init_scale"], study["encoder_lr"]) == (
        "float64", 0.6, 9.0, 1e-3)
    assert (study["subset_size"], study["batch_size"], study["data_seeds"], study["model_seeds"]) == (
        1000, 200, [0], [0])
    assert len(config["studies"]["mnist_extended"]["grid"]["lr"]["values"]) == 15
    assert len(config["studies"]["mnist_extended"]["grid"]["wd"]["values"]) == 14


@pytest.mark.parametrize("override,message", [
    ({"budget": 12345}, "config error at studies.mnist.budget: 12345 is not an evaluation step"),
    ({"data_seeds": [0, 1]}, "config error at studies.mnist.data_seeds"),
    ({"objective": "classification"}, "config error at studies.mnist: unknown key 'objective'"),
    ({"batch_size": 0}, "config error at studies.mnist.batch_size: 0 is less than the minimum of 1"),
])
def test_bad_mnist_settings_stop_with_one_clear_line(override, message):
    raw = load_config()
    raw["studies"]["mnist"].update(override)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(raw)
