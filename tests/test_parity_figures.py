"""Sparse-parity figures (paper 002): the cluster score of hidden representations, the weight
statistics, the generalization threshold, the config rules of their keys, and the three kinds drawn
from tiny study files of the shape a parity study writes."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from grokking import io
from grokking import parity_analysis as pa
from grokking.config import ConfigError, validate_config
from grokking.figures import figure_kind
from tests.conftest import ROOT

N, K, N_TEST, WIDTH = 6, 2, 40, 8
SNAPSHOT_EPOCHS = [0, 50, 100]
BUDGET = 100
STUDY = {"task": "parity", "n": N, "k": K, "n_train": 40, "n_test": N_TEST, "width": WIDTH, "batch_size": 0,
         "budget": BUDGET, "threshold": 1.0, "snapshot_epochs": SNAPSHOT_EPOCHS}


def signs(rows: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (rows, N), generator=generator).float() * 2 - 1


def dataset() -> dict:
    x_train, x_test = signs(40, 0), signs(N_TEST, 1)
    return {0: {"x_train": x_train, "y_train": x_train[:, :K].prod(1), "x_test": x_test,
                "y_test": x_test[:, :K].prod(1)}}


def parity_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden units that see only x1 and x2, one per sign pattern (others dead): each of the four
    groups maps to one point, ReLU(x1 + x2), ReLU(-x1 - x2), ..."""
    weight = torch.zeros(WIDTH, N)
    for unit, (a, b) in enumerate([(1, 1), (-1, -1), (1, -1), (-1, 1)]):
        weight[unit, :2] = torch.tensor([a, b], dtype=torch.float32)
    return weight, torch.zeros(WIDTH)


def history(seed: int = 0) -> dict:
    """Random weights at epoch 0, half-way at 50, exact parity features (shrunk off-support) at 100;
    memorized at epoch 20, generalized at 80."""
    generator = torch.Generator().manual_seed(seed)
    random_w, random_b = torch.randn(WIDTH, N, generator=generator) * 0.4, torch.randn(WIDTH, generator=generator) * 0.1
    good_w, good_b = parity_weights()
    weights = torch.stack([random_w, 0.5 * random_w + 0.5 * good_w, good_w + 0.001 * random_w])
    biases = torch.stack([random_b, 0.5 * random_b, good_b])
    steps = torch.arange(0, BUDGET + 1, dtype=torch.int32)
    train = torch.where(steps >= 20, 1.0, 0.5 + steps / 50)
    val = torch.where(steps >= 80, 1.0, 0.5)
    curve = torch.linspace(1, 0.1, len(steps))
    return {"step": steps, "train_acc": train, "val_acc": val, "train_loss": curve, "val_loss": curve,
            "param_norm": curve, "spectral_norm": curve,
            "snapshots": {"epoch": torch.tensor(SNAPSHOT_EPOCHS, dtype=torch.int32), "hidden.weight": weights,
                          "hidden.bias": biases, "readout.weight": torch.ones(3, 1, WIDTH)}}


def cells_table(axis: str, values: list[float], generalizes, seeds: int = 3, **fixed) -> pd.DataFrame:
    """One cell per value x model seed; ``generalizes(value, seed)`` says whether its T_val is set."""
    rows = []
    for value in values:
        for seed in range(seeds):
            ok = generalizes(value, seed)
            rows.append({"cell_id": f"c{len(rows)}", "lr": 0.1, "wd": 0.01, axis: value, "data_seed": 0,
                         "model_seed": seed, "activation": "relu", "budget": BUDGET, "steps_run": BUDGET,
                         "t_train": 20, "t_val": 40 + int(100 * np.nan_to_num(value)) + seed if ok else None,
                         "final_train_acc": 1.0, "final_val_acc": 1.0 if ok else 0.55 + 0.02 * seed,
                         "diverged": False, "diverged_step": None, **fixed})
    frame = pd.DataFrame(rows)
    frame["t_val"] = frame["t_val"].astype("Int64")
    return frame


WD_AFTER = [0.005, 0.01, 0.05, 0.1, 0.2, 0.5]


@pytest.fixture
def parity_study(tmp_path, monkeypatch):
    """A parity study's files under tmp_path (the working directory): dataset, one shard of two
    cells' histories, and its cells table."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "par" / "shards").mkdir(parents=True)
    io.save_torch(dataset(), "results/par/dataset.pt")
    io.save_torch({"c0": history(0), "c1": history(1)}, "results/par/shards/s0.history.pt")
    cells = cells_table("wd_after", [0.1], lambda v, s: True, seeds=2)
    cells["t_val"] = pd.array([80, 80], dtype="Int64")
    cells.to_csv("results/par/cells.csv", index=False)
    return {"par": STUDY}


def histories_of(study: str) -> list[str]:
    return [f"results/{study}/shards/s0.history.pt"]


def test_cluster_score_rises_when_the_hidden_layer_sees_only_the_first_k_coordinates():
    data, h = dataset()[0], history()
    groups = pa.parity_groups(data["x_test"], K)
    assert set(groups) == {0, 1, 2, 3}
    assert pa.group_label(0, K) == "x1=+1, x2=+1" and pa.group_label(1, K) == "x1=+1, x2=-1"
    snaps = h["snapshots"]
    scores = [pa.cluster_score(pa.hidden_representations(data["x_test"], snaps["hidden.weight"][i],
                                                         snaps["hidden.bias"][i]), groups) for i in range(3)]
    assert scores[0] < 0.3 and scores[2] > 0.95
    assert scores[0] < scores[1] < scores[2]
    hidden = pa.hidden_representations(data["x_test"], *parity_weights())
    assert hidden.shape == (N_TEST, WIDTH) and (hidden >= 0).all()
    assert np.isnan(pa.cluster_score(hidden, np.zeros(N_TEST)))  # one group: no silhouette


def test_tsne_is_seeded_and_tolerates_a_dead_layer():
    data, h = dataset()[0], history()
    snaps = h["snapshots"]
    hidden = pa.hidden_representations(data["x_test"], snaps["hidden.weight"][0], snaps["hidden.bias"][0])
    assert np.array_equal(pa.tsne_embedding(hidden), pa.tsne_embedding(hidden))
    assert pa.tsne_perplexity(N_TEST) == 13 and pa.tsne_perplexity(100) == 30
    assert not pa.tsne_embedding(np.zeros((N_TEST, WIDTH))).any()


def test_weight_stats_follow_weights_shrinking_to_zero():
    weights = torch.randn(4, WIDTH, N, generator=torch.Generator().manual_seed(0)) * 0.1
    weights *= torch.tensor([1.0, 0.3, 0.1, 0.01]).view(4, 1, 1)
    stats = pa.weight_stats(weights)
    assert np.all(np.diff(stats["near_zero"]) > 0) and np.all(np.diff(stats["std"]) < 0)
    assert stats["near_zero"][-1] > 0.9
    assert pa.weight_stats(torch.full((1, 3), 0.005))["near_zero"][0] == 1.0
    grid = np.linspace(-1, 1, 201)
    density = pa.weight_density(weights[0], grid)
    assert abs(float(density.sum() * (grid[1] - grid[0])) - 1) < 0.01
    assert np.isnan(pa.weight_density(np.zeros(5), grid)).all()


def test_snapshot_choice_and_accuracies():
    h = history()
    assert pa.snapshot_indices(h["snapshots"], None) == [0, 1, 2]
    assert pa.snapshot_indices(h["snapshots"], [100, 0]) == [2, 0]
    with pytest.raises(ValueError, match="no snapshot at epoch 7 .snapshots at epochs 0, 50, 100"):
        pa.snapshot_indices(h["snapshots"], [7])
    assert pa.accuracies_at(h, 100) == (1.0, 1.0)
    assert np.isnan(pa.accuracies_at(h, 500)[0])
    cells = cells_table("wd_after", [0.1, 0.2], lambda v, s: True)
    assert pa.select_cell(cells).cell_id == "c0"
    assert pa.select_cell(cells, 2).cell_id == "c2"
    with pytest.raises(ValueError, match="no cell has model_seed 9"):
        pa.select_cell(cells, 9)


@pytest.mark.parametrize("generalizes,expected", [
    (lambda v, s: v < 0.1 or (v == 0.1 and s == 0), 0.2),  # below 0.1 all, at 0.1 one seed, none from 0.2
    (lambda v, s: v in (0.005, 0.01, 0.1), 0.2),  # not monotone: none at 0.05, yet some at 0.1
    (lambda v, s: v != 0.2, None),  # a seed generalizes at the largest value: no threshold
    (lambda v, s: True, None),
    (lambda v, s: False, 0.005),  # none anywhere: the whole range
])
def test_generalization_threshold(generalizes, expected):
    assert pa.generalization_threshold(cells_table("wd_after", WD_AFTER, generalizes), "wd_after") == expected


def test_unswitched_and_noiseless_cells_count_at_their_wd_and_at_zero():
    cells = cells_table("wd_after", [np.nan, 0.5], lambda v, s: not v == 0.5)
    assert list(pa.axis_values(cells, "wd_after").unique()) == [0.01, 0.5]
    assert pa.generalization_threshold(cells, "wd_after") == 0.5
    noise = cells_table("label_noise", [np.nan, 0.1], lambda v, s: True)
    assert list(pa.axis_values(noise, "label_noise").unique()) == [0.0, 0.1]
    assert (pa.axis_values(cells.drop(columns="wd_after"), "label_noise") == 0).all()


def test_response_lines_split_by_the_other_swept_axes():
    cells = pd.concat([cells_table("wd_after", WD_AFTER, lambda v, s: v < 0.2, wd=wd) for wd in (0.01, 0.1)])
    lines = pa.response_lines(cells, "wd_after")
    assert [name for name, _ in lines] == ["wd 0.01", "wd 0.1"]
    assert all(list(line["x"].unique()) == WD_AFTER for _, line in lines)
    assert [name for name, _ in pa.response_lines(cells[cells["wd"] == 0.1], "wd_after")] == [""]


def check_images(tmp_path, name: str) -> None:
    for suffix in ("pdf", "png"):
        assert (tmp_path / f"{name}.{suffix}").stat().st_size > 1000


@pytest.mark.parametrize("kind", ["representations", "weight_kde"])
def test_snapshot_figures_draw(parity_study, tmp_path, kind):
    figure = figure_kind(kind)
    spec = {"kind": kind, "studies": ["par"], "epochs": [0, 100], "model_seed": 1}
    files = figure.inputs(spec, parity_study, histories_of)
    assert files == {"histories": histories_of("par"), "cells": ["results/par/cells.csv"],
                     "dataset": ["results/par/dataset.pt"]}
    figure.draw(files, figure.options(spec, parity_study), str(tmp_path / f"{kind}.pdf"), str(tmp_path / f"{kind}.png"))
    check_images(tmp_path, kind)
    with pytest.raises(ValueError, match="no snapshot at epoch 60"):
        figure.draw(files, figure.options({**spec, "epochs": [60]}, parity_study), "x.pdf", "x.png")


def test_response_figure_draws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    studies = {}
    for name, table in (("h1", pd.concat([cells_table("wd_after", [np.nan, *WD_AFTER], lambda v, s: v < 0.2 or
                                                      (v == 0.2 and s == 0), seeds=5, wd=wd) for wd in (0.01, 0.001)])),
                        ("h2", cells_table("wd_after", WD_AFTER, lambda v, s: True, seeds=5))):
        (tmp_path / "results" / name).mkdir(parents=True)
        table.to_csv(f"results/{name}/cells.csv", index=False)
        studies[name] = STUDY
    figure = figure_kind("response")
    spec = {"kind": "response", "studies": ["h1", "h2"], "axis": "wd_after", "labels": ["switch", "control"]}
    files = figure.inputs(spec, studies, histories_of)
    assert files == {"cells_0": ["results/h1/cells.csv"], "cells_1": ["results/h2/cells.csv"]}
    figure.draw(files, figure.options(spec, studies), str(tmp_path / "response.pdf"), str(tmp_path / "response.png"))
    check_images(tmp_path, "response")


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_config_rules_of_the_parity_figure_keys(raw):
    raw["figures"]["resp"] = {"kind": "response", "studies": ["toy_cls"]}
    with pytest.raises(ConfigError, match=r"^config error at figures.resp.axis: a response figure needs"):
        validate_config(raw)
    raw["figures"]["resp"]["axis"] = "lr"
    with pytest.raises(ConfigError, match=r"^config error at figures.resp.axis: 'lr' is not one of"):
        validate_config(raw)
    raw["figures"]["resp"]["axis"] = "label_noise"
    raw["figures"]["fig1_toy_phases"]["epochs"] = [10]
    with pytest.raises(ConfigError, match="figures.fig1_toy_phases.epochs: only representations and weight_kde"):
        validate_config(raw)
    del raw["figures"]["fig1_toy_phases"]["epochs"]
    raw["figures"]["kde"] = {"kind": "weight_kde", "studies": ["toy_cls", "toy_regr"]}
    with pytest.raises(ConfigError, match="a weight_kde figure draws one study"):
        validate_config(raw)
    raw["figures"]["kde"] = {"kind": "weight_kde", "studies": ["toy_cls"], "epochs": [0, 100], "model_seed": 1}
    validate_config(raw)
