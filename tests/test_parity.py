"""The sparse-parity task (paper 002): its data, its equivalence with a plain PyTorch loop (weight
decay switched at memorization and flipped labels included), continuation, and its config checks."""

import copy
import re

import pandas as pd
import pytest
import torch
import yaml

from grokking.config import ConfigError, validate_config
from grokking.grid import study_cells
from grokking.modular import epoch_order
from grokking.parity import build_model, correct, flipped_labels, parity_split, sample_losses
from grokking.tasks.parity_trainer import train_parity_shard
from grokking.trainer import EngineSettings

SMALL = {"task": "parity", "n": 8, "k": 2, "n_train": 40, "n_test": 30, "width": 16, "batch_size": 8,
         "budget": 12, "threshold": 0.75, "dtype": "float64", "model_seeds": [0, 1],
         "grid": {"lr": {"values": [0.1]}, "wd": {"values": [0.01]}, "wd_after": {"values": [0.01, 0.3]},
                  "label_noise": {"values": [0.0, 0.2]}}}


def validated(study: dict, name: str = "par") -> dict:
    config = yaml.safe_load(open("config.yaml"))
    config["studies"], config["figures"] = {name: copy.deepcopy(study)}, {}
    return validate_config(config)["studies"][name]


def test_labels_are_the_parity_of_the_first_k_coordinates_and_seeded():
    split = parity_split(12, 3, 50, 20, seed=4)
    assert set(split.x_train.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(split.y_train, split.x_train[:, :3].prod(1))
    assert torch.equal(split.x_test, parity_split(12, 3, 50, 20, seed=4).x_test)
    assert not torch.equal(split.x_train, parity_split(12, 3, 50, 20, seed=5).x_train)


def test_flipped_labels_are_nested_across_probabilities():
    y = parity_split(10, 2, 400, 1, seed=0).y_train
    low, high = (flipped_labels(y, p, data_seed=0, model_seed=1) for p in (0.1, 0.3))
    flipped_low, flipped_high = low != y, high != y
    assert (flipped_low & ~flipped_high).sum() == 0  # every label flipped at 0.1 is flipped at 0.3
    assert 0.05 < flipped_low.float().mean() < 0.15 and 0.2 < flipped_high.float().mean() < 0.4
    assert torch.equal(flipped_labels(y, 0.0, 0, 1), y)


def test_hinge_loss_and_sign_accuracy_follow_the_public_code():
    out, y = torch.tensor([2.0, 0.5, 0.0, -1.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert torch.allclose(sample_losses(out, y, "hinge"), torch.tensor([0.0, 0.5, 1.0, 2.0]))
    assert correct(out, y).tolist() == [True, True, False, False]  # an output of 0 is wrong


def plain_loop(study: dict, cell, split) -> tuple[torch.nn.Module, int | None]:
    """One cell trained alone: nn.Module, torch.optim.SGD, its own batch order, weight decay switched
    after the epoch at which it first fits its training set."""
    model = build_model(study["n"], study["width"], int(cell.model_seed)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=cell.lr, weight_decay=cell.wd)
    x = split.x_train.double()
    y = flipped_labels(split.y_train, cell.label_noise, int(cell.data_seed), int(cell.model_seed)).double()
    t_train = None
    for epoch in range(1, study["budget"] + 1):
        order = epoch_order(len(y), study["batch_seed"], int(cell.model_seed), epoch - 1)
        for rows in order.split(study["batch_size"]):
            optimizer.zero_grad()
            sample_losses(model(x[rows]), y[rows], "hinge").mean().backward()
            optimizer.step()
        with torch.no_grad():
            if t_train is None and correct(model(x), y).double().mean() >= study["threshold"]:
                t_train = epoch
                optimizer.param_groups[0]["weight_decay"] = cell.wd_after
    return model, t_train


def test_a_shard_member_follows_the_same_module_trained_alone():
    study = validated(SMALL)
    cells = study_cells(study)
    assert len(cells) == 8 and {"wd_after", "label_noise"} <= set(cells.columns)
    split = parity_split(study["n"], study["k"], study["n_train"], study["n_test"], 0)
    study["snapshot_epochs"] = [study["budget"]]
    result = train_parity_shard(study, cells, {0: split}, EngineSettings(compile=False))
    reached = 0
    for i, cell in cells.iterrows():
        model, t_train = plain_loop(study, cell, split)
        row = result.metrics.iloc[i]
        assert pd.isna(row.t_train) if t_train is None else row.t_train == t_train, cell.cell_id
        reached += t_train is not None
        snapshot = result.history[cell.cell_id]["snapshots"]
        for name, value in model.state_dict().items():
            assert torch.allclose(snapshot[name][-1].double(), value, atol=1e-5), (cell.cell_id, name)
    assert reached >= 2  # the weight-decay switch was exercised


def test_a_continuation_equals_one_uninterrupted_run():
    study = validated({**SMALL, "budget": 6})
    cells = study_cells(study)
    split = {0: parity_split(study["n"], study["k"], study["n_train"], study["n_test"], 0)}
    whole = train_parity_shard(study, cells, split, EngineSettings(compile=False))
    first = train_parity_shard({**study, "budget": 3}, cells, split, EngineSettings(compile=False))
    rest = train_parity_shard(study, cells, split, EngineSettings(compile=False), resume=first.end_state)
    for key in ("t_train", "t_val", "final_train_acc", "final_val_acc"):
        assert whole.metrics[key].astype(str).tolist() == rest.metrics[key].astype(str).tolist(), key
    for name, value in whole.end_state["params"].items():
        assert torch.allclose(value, rest.end_state["params"][name], atol=1e-12), name


def test_history_records_epochs_norms_and_snapshots():
    study = validated({**SMALL, "snapshot_epochs": [0, 4], "model_seeds": [0], "grid": SMALL["grid"] | {
        "wd_after": {"values": [0.01]}, "label_noise": {"values": [0.0]}}})
    cells = study_cells(study)
    split = parity_split(study["n"], study["k"], study["n_train"], study["n_test"], 0)
    history = train_parity_shard(study, cells, {0: split}, EngineSettings(compile=False)).history
    run = history[cells.cell_id[0]]
    assert run["step"].tolist() == list(range(0, 13))
    assert run["spectral_norm"].shape == (13,) and (run["spectral_norm"] > 0).all()
    assert run["snapshots"]["epoch"].tolist() == [0, 4]
    assert run["snapshots"]["hidden.weight"].shape == (2, 16, 8)


@pytest.mark.parametrize("change, message", [
    ({"k": 9}, "k: 9 coordinates of an input of n = 8"),
    ({"snapshot_epochs": [13]}, "snapshot_epochs: epoch 13"),
    ({"eval_every": 5}, "budget: 12 epochs is not a multiple of eval_every 5"),
    ({"grid": {"lr": {"values": [0.1]}, "wd": {"values": [0.01]}, "label_noise": {"values": [1.5]}}},
     "label_noise.values[0]: 1.5 is not a valid label-flip probability"),
    ({"grid": {"lr": {"values": [0.1]}, "wd": {"values": [0.01]}, "noise": {"values": [0.1]}}},
     "grid: unknown key 'noise'"),
])
def test_bad_parity_settings_name_the_key(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validated({**SMALL, **change})


def test_parity_axes_are_refused_on_modular_studies():
    study = {"task": "modular", "grid": {"lr": {"values": [1e-3]}, "wd": {"values": [1.0]},
                                         "wd_after": {"values": [0.1]}}, "budget": 100}
    with pytest.raises(ConfigError, match=re.escape("grid: unknown key 'wd_after'")):
        validated(study)
