"""Curves and curve_table figures: seed aggregation, delay text, labels, and both kinds drawn through
the plot verb from synthetic study files of the shape a modular-arithmetic study writes."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from grokking import cli, io
from grokking.config import ConfigError, validate_config
from grokking.curve_plots import (curve_table, curves_figure, delay_text, read_cells, seed_band, study_settings,
                                  table_text)
from grokking.figures import figure_kind
from grokking.phases import classify_cells
from tests.conftest import ROOT

STEPS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
SETTINGS = {"threshold": 0.95, "budget": 10000, "p": 97, "operation": "add", "train_fraction": 0.3,
            "batch_size": 0}
LAYERS = 2


def history(t_train: int, t_val: int, seed: int) -> dict:
    """Accuracies rising around their threshold steps; losses, norms and noise from the seed."""
    steps = np.array(STEPS, dtype=float)
    rng = np.random.default_rng(seed)
    rise = lambda t: 1 / (1 + (t / np.maximum(steps, 0.5)) ** 4)  # noqa: E731
    train, val = rise(t_train) * 0.99 + 0.01, rise(t_val) * 0.98 + 0.01
    attn = 1 + np.outer(np.log1p(steps), np.arange(1, LAYERS * 4 + 1)) / 10 + rng.random((len(steps), 8)) / 10
    return {"step": torch.tensor(STEPS, dtype=torch.int32),
            "train_acc": torch.tensor(train, dtype=torch.float32),
            "val_acc": torch.tensor(val, dtype=torch.float32),
            "train_loss": torch.tensor(-np.log(train), dtype=torch.float32),
            "val_loss": torch.tensor(-np.log(val), dtype=torch.float32),
            "param_norm": torch.tensor(30 - 2 * np.log1p(steps) + rng.random(len(steps)), dtype=torch.float32),
            "attn_norm": torch.tensor(attn.reshape(len(steps), LAYERS, 4), dtype=torch.float32)}


def write_study(root, name: str, points: list[tuple[float, float]], t_values: list[tuple]) -> dict[str, str]:
    """cells.csv, phases.csv and two shard histories of a study: 2 seeds per (lr, wd) point, the
    i-th cell reaching the thresholds at ``t_values[i]`` (None: never)."""
    rows, histories = [], {}
    for (lr, wd), seed in ((point, seed) for point in points for seed in (0, 1)):
        t_train, t_val = t_values[len(rows)]
        cell_id = f"lr{lr:g}_wd{wd:g}_d{seed}_m{seed}"
        rows.append({"cell_id": cell_id, "lr": lr, "wd": wd, "data_seed": seed, "model_seed": seed,
                     "activation": "relu", "budget": 10000, "steps_run": 10000, "t_train": t_train,
                     "t_val": t_val, "final_train_acc": 1.0 - 0.01 * len(rows), "final_val_acc": 0.9 + 0.02 * seed,
                     "diverged": False, "diverged_step": None})
        histories[cell_id] = history(t_train or 20000, t_val or 20000, seed=len(rows))
    cells = pd.DataFrame(rows).astype({"t_train": "Int64", "t_val": "Int64"})
    study = root / name
    study.mkdir()
    io.write_csv(cells, study / "cells.csv")
    io.write_csv(classify_cells(cells, gap=1000), study / "phases.csv")
    ids = list(histories)
    shards = []
    for k, part in enumerate((ids[: len(ids) // 2], ids[len(ids) // 2:])):
        shards.append(str(study / f"s{k:03d}.history.pt"))
        io.save_torch({c: histories[c] for c in part}, shards[-1])
    return {"cells": str(study / "cells.csv"), "phases": str(study / "phases.csv"), "histories": shards}


@pytest.fixture
def studies(tmp_path):
    return [write_study(tmp_path, "mod_a", [(1e-3, 1.0)], [(100, 1500), (120, 2000)]),
            write_study(tmp_path, "mod_b", [(1e-3, 0.1), (3e-3, 1.0)],
                        [(50, None), (60, None), (200, 400), (None, None)])]


def plot(kind: str, inputs: dict[str, list[str]], options: dict, out) -> tuple:
    pdf, png = out / f"{kind}.pdf", out / f"{kind}.png"
    words = [f"{name}={path}" for name, paths in inputs.items() for path in paths]
    cli.main(["plot", kind, "--input", *words, f"--options={json.dumps(options)}", "--pdf", str(pdf),
              "--png", str(png)])
    return pdf, png


def test_curves_figure_draws_every_panel_through_the_plot_verb(studies, tmp_path):
    spec = {"kind": "curves", "studies": ["mod_a", "mod_b"], "labels": ["add", "add, small wd"],
            "panels": ["accuracy", "best_accuracy", "loss", "param_norm", "attn_norm"], "marks": True,
            "title": "synthetic"}
    kind = figure_kind("curves")
    names = kind.inputs(spec, {}, lambda s: [])
    assert list(names) == ["histories_0", "cells_0", "histories_1", "cells_1"]
    assert all(name.isidentifier() for name in names)
    options = kind.options(spec, {"mod_a": {**SETTINGS, "task": "modular", "arity": 2},
                                  "mod_b": {**SETTINGS, "task": "modular", "arity": 2, "batch_size": 512}})
    assert options["studies"][0]["task"] == "x + y mod 97"  # the task's own label
    assert options["studies"][1]["batch_size"] == 512 and options["labels"] == ["add", "add, small wd"]
    inputs = {f"{what}_{i}": study[what] if what == "histories" else [study[what]]
              for i, study in enumerate(studies) for what in ("histories", "cells")}
    for path in plot("curves", inputs, options, tmp_path / "out"):
        assert path.stat().st_size > 0


def test_curves_defaults_are_accuracy_and_loss_labelled_by_study(studies, tmp_path):
    spec = {"kind": "curves", "studies": ["mod_a"]}
    toy = {"task": "toy", "objective": "classification", "threshold": 0.9, "budget": 10000, "p": 10}
    options = figure_kind("curves").options(spec, {"mod_a": toy})
    assert options == {"title": "", "labels": ["mod_a"], "panels": ["accuracy", "loss"], "marks": False,
                       "studies": [{"threshold": 0.9, "budget": 10000, "p": 10, "task": "classification",
                                    "clock": "steps"}]}
    inputs = {"histories_0": studies[0]["histories"], "cells_0": [studies[0]["cells"]]}
    for path in plot("curves", inputs, options, tmp_path / "out"):
        assert path.stat().st_size > 0


def test_seeds_are_aggregated_on_the_steps_they_share():
    band = seed_band([(np.array([0, 1, 2, 3]), np.array([0.0, 0.2, 0.4, 0.6])),
                      (np.array([0, 2, 3, 4]), np.array([0.1, 0.6, 0.8, 1.0])),
                      (np.array([0, 2, 3]), np.array([0.2, 0.5, 0.7]))])
    assert band.steps.tolist() == [0, 2, 3]
    np.testing.assert_allclose(band.mean, [0.1, 0.5, 0.7])
    np.testing.assert_allclose(band.low, [0.0, 0.4, 0.6])
    np.testing.assert_allclose(band.high, [0.2, 0.6, 0.8])
    assert band.n_seeds == 3


def test_best_accuracy_is_the_running_maximum_of_each_seed_before_the_band():
    from grokking.curve_plots import Curve

    histories = [{"step": np.array([1, 2, 3]), "val_acc": np.array([0.2, 0.1, 0.5])},
                 {"step": np.array([1, 2, 3]), "val_acc": np.array([0.4, 0.3, 0.2])}]
    curve = Curve("c", "k", histories, pd.Series([1, 1]), pd.Series([None, None]), 3)
    np.testing.assert_allclose(curve.band("val_acc_best", None).mean, [0.3, 0.3, 0.45])
    np.testing.assert_allclose(curve.band("val_acc", None).mean, [0.3, 0.2, 0.35])


def test_seeds_that_share_no_step_are_refused():
    with pytest.raises(ValueError, match="share no evaluation step"):
        seed_band([(np.array([1, 2]), np.zeros(2)), (np.array([3, 4]), np.zeros(2))])


def test_delay_text_says_the_mean_delay_or_which_threshold_was_missed():
    steps = lambda *values: pd.Series(values, dtype="Int64")  # noqa: E731
    assert delay_text(steps(100, 120), steps(1300, 1400), 10000) == "delay 1,240 steps"
    assert delay_text(steps(100, 120), steps(1300, None), 10000) == "delay 1,200 steps (1 of 2 seeds)"
    assert delay_text(steps(100, 120), steps(None, None), 10000) == "T_val not reached within 10,000 steps"
    assert delay_text(steps(None, None), steps(None, None), 500) == "T_train not reached within 500 steps"


def test_every_figure_states_its_task_batch_and_budget():
    assert study_settings("a", SETTINGS) == ("a: (a + b) mod 97, train fraction 0.3, full batch, "
                                             "budget 10,000 steps, threshold 0.95")
    assert "batch 512" in study_settings("a", {**SETTINGS, "batch_size": 512})


def test_curve_table_rows_aggregate_seeds_per_point(studies):
    tables = [(label, read_cells(s["cells"]), read_cells(s["phases"])) for label, s in zip(("A", "B"), studies)]
    table = curve_table(tables, [{"task": "x + y mod 97", "train_fraction": 0.3, "batch_size": 0},
                                 {"batch_size": 512}])
    assert table["setting"].tolist() == ["x + y mod 97, alpha 0.3, full batch"] + ["batch 512"] * 2
    assert table[["label", "lr", "wd", "seeds"]].values.tolist() == [
        ["A", 1e-3, 1.0, 2], ["B", 1e-3, 0.1, 2], ["B", 3e-3, 1.0, 2]]
    assert table["t_train"].tolist()[:2] == [110.0, 55.0] and table["t_val"][0] == 1750.0
    assert table["t_val"].isna().tolist() == [False, True, False]
    assert table["t_train_reached"].tolist() == [2, 2, 1] and table["t_val_reached"].tolist() == [2, 0, 1]
    np.testing.assert_allclose(table["train_acc"], [0.995, 0.995, 0.975])
    np.testing.assert_allclose(table["val_acc_std"], [0.02 / np.sqrt(2)] * 3)
    assert table[["comprehension", "grokking", "memorization", "confusion"]].values.tolist() == [
        [0, 2, 0, 0], [0, 0, 2, 0], [1, 0, 0, 1]]
    text = table_text(table)
    delay = (read_cells(studies[0]["cells"])["t_val"] - read_cells(studies[0]["cells"])["t_train"]).mean()
    assert text[0][5:10] == ["110 (2/2)", "1,750 (2/2)", f"{delay:,.0f}", "0.995 ± 0.007", "0.910 ± 0.014"]
    assert text[1][6:8] == ["— (0/2)", "—"]


def test_curve_table_draws_through_the_plot_verb(studies, tmp_path):
    spec = {"kind": "curve_table", "studies": ["mod_a", "mod_b"], "labels": ["A", "B"]}
    kind = figure_kind("curve_table")
    assert list(kind.inputs(spec, {}, lambda s: [])) == ["cells_0", "phases_0", "cells_1", "phases_1"]
    inputs = {f"{what}_{i}": [study[what]] for i, study in enumerate(studies) for what in ("cells", "phases")}
    settings = {"task": "modular", "arity": 2, **SETTINGS}
    for path in plot("curve_table", inputs, kind.options(spec, {"mod_a": settings, "mod_b": settings}),
                     tmp_path / "out"):
        assert path.stat().st_size > 0


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_labels_must_name_every_study(raw):
    raw["figures"]["curves_check"] = {"kind": "curves", "studies": ["toy_cls", "toy_regr"], "labels": ["one"]}
    with pytest.raises(ConfigError, match=re.escape("figures.curves_check.labels: 1 labels for 2 studies")):
        validate_config(raw)
    raw["figures"]["curves_check"]["labels"] = ["one", "two"]
    raw["figures"]["table_check"] = {"kind": "curve_table", "studies": ["toy_cls"], "labels": ["one"]}
    validate_config(raw)


@pytest.mark.parametrize("key,value", [("labels", ["a", "b"]), ("panels", ["loss"]), ("marks", True)])
def test_curve_keys_belong_to_curve_kinds(raw, key, value):
    raw["figures"]["fig1_toy_phases"][key] = value
    with pytest.raises(ConfigError, match=f"figures.fig1_toy_phases.{key}: only curves"):
        validate_config(raw)


def test_a_panel_the_study_does_not_record_is_named(studies, tmp_path):
    histories = io.load_histories(studies[0]["histories"])
    for entry in histories.values():
        del entry["train_loss"]  # as a task that records accuracies only
    cells = read_cells(studies[0]["cells"])
    with pytest.raises(ValueError, match="no 'train_loss'"):
        curves_figure([(histories, cells)], ["a"], [SETTINGS], tmp_path / "f.pdf", tmp_path / "f.png",
                      panels=["loss"])
    assert not (tmp_path / "f.pdf").exists()
