"""Bad config values each stop the workflow with one line that names the offending key."""

import copy

import numpy as np
import pytest

from grokking.config import ConfigError, validate_config
from grokking.grid import axis_values, study_cells, study_shards
from tests.conftest import load_config


@pytest.fixture
def raw():
    import yaml

    from tests.conftest import ROOT

    return yaml.safe_load((ROOT / "config.yaml").read_text())


def error_of(config) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_shipped_config_and_presets_are_valid():
    for presets in ((), ("smoke",), ("demo",), ("coarse",), ("coarse", "fig1_full_classification")):
        load_config(*presets)


def test_misspelt_key(raw):
    raw["studies"]["toy_cls"]["budgett"] = 5
    message = error_of(raw)
    assert "studies.toy_cls" in message and "'budgett'" in message


def test_negative_budget(raw):
    raw["studies"]["toy_cls"]["budget"] = -5
    assert error_of(raw).startswith("config error at studies.toy_cls.budget:")


def test_empty_grid(raw):
    raw["studies"]["toy_regr"]["grid"]["wd"] = {"values": []}
    assert error_of(raw).startswith("config error at studies.toy_regr.grid.wd")


def test_axis_with_both_forms(raw):
    raw["studies"]["toy_cls"]["grid"]["lr"]["values"] = [1e-3]
    assert "studies.toy_cls.grid.lr" in error_of(raw)


def test_log_axis_needs_positive_bounds(raw):
    raw["studies"]["toy_cls"]["grid"]["lr"]["min"] = 0.0
    assert error_of(raw).startswith("config error at studies.toy_cls.grid.lr:")


def test_unknown_activation(raw):
    raw["studies"]["toy_cls"]["activations"] = ["gelu"]
    assert "studies.toy_cls.activations.0" in error_of(raw)


def test_unknown_engine_key(raw):
    raw["engine"]["shard_sise"] = 3
    message = error_of(raw)
    assert "'shard_sise'" in message and "at engine" in message


def test_defaults_are_filled(raw):
    del raw["studies"]["toy_cls"]["threshold"]
    config = validate_config(raw)
    assert config["studies"]["toy_cls"]["threshold"] == 0.899
    assert config["studies"]["toy_cls"]["embedding_lr"] == 1e-3
    assert "threshold" not in raw["studies"]["toy_cls"]  # the input is not modified


def test_grid_matches_the_report():
    config = load_config()
    lrs = axis_values(config["studies"]["toy_cls"]["grid"]["lr"])
    assert len(lrs) == 21 and lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1e-2)
    assert lrs[10] == pytest.approx(10**-3.5)
    wds = axis_values(config["studies"]["toy_regr"]["grid"]["wd"])
    assert wds == pytest.approx([0.5 * i for i in range(21)])
    cells = study_cells(config["studies"]["toy_cls"])
    assert len(cells) == 441 and cells["cell_id"].is_unique


def test_shards_cover_every_cell_once_and_respect_the_size():
    config = load_config()
    study = copy.deepcopy(config["studies"]["toy_cls"])
    study["activations"] = ["tanh", "relu"]
    shards = study_shards(study, {**config["engine"], "shard_size": 50})
    assert shards["cell_id"].is_unique and len(shards) == 882
    sizes = shards.groupby("shard").size()
    assert sizes.max() <= 50
    assert (shards.groupby("shard")["activation"].nunique() == 1).all()


def test_pairwise_grid_pairs_values_one_to_one():
    config = load_config()
    cells = study_cells(config["studies"]["toy_trajectories"])
    lr_3_8 = float(np.logspace(-5, -2, 21)[8])  # 10^-3.8 on the report's axis
    assert list(zip(cells["lr"], cells["wd"])) == [(lr_3_8, 0.0), (1e-2, 0.0), (1e-5, 5.0), (1e-2, 10.0)]
    # lr 10^-3.8 is a cell of the report's 21x21 regression grid: the same id, the same run.
    assert cells["cell_id"].iloc[0] in set(study_cells(config["studies"]["toy_regr"])["cell_id"])


def test_pairwise_grid_needs_equally_long_axes(raw):
    raw["studies"]["toy_trajectories"]["grid"]["wd"]["values"] = [0.0, 5.0]
    assert error_of(raw).startswith("config error at studies.toy_trajectories.grid.pairwise: lr has 4")


@pytest.mark.parametrize("figure,key,value,message", [
    ("fig1_toy_phases", "rows", "data_seed", "figures.fig1_toy_phases.rows: only facets figures"),
    ("fig7_toy_cls_seeds", "max_step", 10, "figures.fig7_toy_cls_seeds.max_step: only trajectories"),
    ("fig7_toy_cls_seeds", "cols", "lr", "figures.fig7_toy_cls_seeds.cols"),
    ("fig11_embedding_trajectories", "studies", ["toy_cls", "toy_regr"], "a trajectories figure draws one study"),
])
def test_figure_keys_belong_to_their_kind(raw, figure, key, value, message):
    raw["figures"][figure][key] = value
    assert message in error_of(raw)
