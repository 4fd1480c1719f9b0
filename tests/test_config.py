"""Bad config values each stop the workflow with one line that names the offending key."""

import copy
import subprocess
import sys

import numpy as np
import pytest

from grokking.config import ConfigError, validate_config
from grokking.grid import axis_values, study_cells, study_shards
from tests.conftest import ROOT, load_config


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


def test_figure_naming_an_unknown_study_stops_the_run(raw):
    # A typo must not drop the figure from `all` silently.
    raw["figures"]["fig1_toy_phases"]["studies"] = ["toy_clss", "toy_regr"]
    message = error_of(raw)
    assert message.startswith("config error at figures.fig1_toy_phases.studies: unknown study 'toy_clss'")
    assert "toy_cls," in message  # the studies that exist, to spot the typo


# Every integer key of the schema, as a path into config.yaml and a whole float for it (YAML reads
# 1.0e+5 as a float).
INTEGER_KEYS = [
    (("engine", "threads"), 2.0), (("engine", "check_every"), 10.0), (("engine", "shard_size"), 21.0),
    (("studies", "toy_cls", "budget"), 1.0e+5), (("studies", "toy_cls", "extended_budget"), 3.0e+5),
    (("studies", "toy_cls", "p"), 10.0), (("studies", "toy_cls", "train_size"), 45.0),
    (("studies", "toy_cls", "hidden"), 200.0), (("studies", "toy_cls", "regression_dim"), 30.0),
    (("studies", "toy_cls", "embedding_dim"), 1.0), (("studies", "toy_cls", "grokking_gap"), 1.0e+3),
    (("studies", "toy_cls", "log_every"), 10.0), (("studies", "toy_cls", "shard_size"), 21.0),
    (("studies", "toy_cls", "grid", "lr", "num"), 21.0), (("studies", "toy_cls", "data_seeds", 0), 42.0),
    (("studies", "toy_cls", "model_seeds", 0), 102.0), (("studies", "mnist", "subset_size"), 1.0e+3),
    (("studies", "mnist", "batch_seed"), 0.0), (("studies", "mnist", "batch_size"), 200.0),
    (("studies", "mnist", "hidden"), 200.0),
    (("figures", "fig11_embedding_trajectories", "max_step"), 2.0e+3),
]


def _set(config: dict, path: tuple, value) -> None:
    """Set a nested key, creating the missing dicts (an absent key takes its schema default)."""
    for part in path[:-1]:
        config = config.setdefault(part, {}) if isinstance(config, dict) else config[part]
    config[path[-1]] = value


def _get(config: dict, path: tuple):
    for part in path:
        config = config[part]
    return config


def _key(path: tuple) -> str:
    return ".".join(map(str, path))


@pytest.mark.parametrize("path,value", INTEGER_KEYS, ids=[_key(p) for p, _ in INTEGER_KEYS])
def test_whole_floats_at_integer_keys_become_integers(raw, path, value):
    _set(raw, path, value)
    converted = _get(validate_config(raw), path)
    assert type(converted) is int and converted == value


@pytest.mark.parametrize("path,value", INTEGER_KEYS, ids=[_key(p) for p, _ in INTEGER_KEYS])
def test_fractional_values_at_integer_keys_are_refused(raw, path, value):
    _set(raw, path, value + 0.5)
    assert error_of(raw).startswith(f"config error at {_key(path)}: {value + 0.5} is not of type 'integer'")


def test_exponent_without_a_dot_is_explained(raw):
    raw["studies"]["toy_cls"]["budget"] = "1e5"  # what YAML makes of `budget: 1e5`
    message = error_of(raw)
    assert message.startswith("config error at studies.toy_cls.budget:") and "1.0e+5" in message


@pytest.mark.parametrize("axis,values,message", [
    ("lr", [1e-3, 1e-2, -0.1], "studies.toy_cls.grid.lr.values[2]: -0.1 is not a valid learning rate"),
    ("lr", [0.0, 1e-2], "studies.toy_cls.grid.lr.values[0]: 0.0 is not a valid learning rate"),
    ("wd", [0.0, -1.0], "studies.toy_cls.grid.wd.values[1]: -1.0 is not a valid weight decay"),
])
def test_negative_learning_rates_and_weight_decays_are_refused(raw, axis, values, message):
    raw["studies"]["toy_cls"]["grid"][axis] = {"values": values}
    assert error_of(raw).startswith(f"config error at {message}")


@pytest.mark.parametrize("study,axis", [("toy_regr", "wd"), ("mnist", "lr")])
def test_linear_axes_below_zero_are_refused(raw, study, axis):
    raw["studies"][study]["grid"][axis] = {"scale": "linear", "min": -1.0, "max": 1.0, "num": 3}
    assert error_of(raw).startswith(f"config error at studies.{study}.grid.{axis}.min: -1.0 is not a valid")


def test_zero_weight_decay_is_fine(raw):
    raw["studies"]["toy_cls"]["grid"]["wd"] = {"values": [0.0, 1.0]}
    validate_config(raw)


def test_config_validation_imports_no_torch():
    """Snakemake validates the config at every start (and dry run): it must not pay torch's import."""
    code = ("import sys; from grokking.config import validate_config; from tests.conftest import load_config; "
            "load_config('demo'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_figure_kind_that_is_not_registered_is_named(raw):
    raw["figures"]["fig1_toy_phases"]["kind"] = "histogram"
    assert "figures.fig1_toy_phases.kind: unknown kind 'histogram' (kinds: phases, smooth" in error_of(raw)
