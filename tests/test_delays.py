"""Grokking delays of paper 003 (sections 3.1-3.2): runs in steps and epochs, classes, the grid summary,
the comprehension band, bootstrapped correlations, and both figure kinds drawn from small synthetic
cells tables of the shape a modular study writes."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from grokking import io
from grokking.delays import (REPORT_CORRELATIONS, classify, comprehension_band, correlations, grid_summary,
                             n_train, runs_table)
from grokking.figures import batch_grid
from grokking.figures import correlations as correlations_kind

DIV47 = {"p": 47, "operation": "div", "train_fraction": 0.3, "budget": 10000, "threshold": 0.95}  # 648 equations


def cells(t_values: list[tuple], **columns) -> pd.DataFrame:
    """A cells table with one run per (t_train, t_val) (None: never reached)."""
    n = len(t_values)
    frame = pd.DataFrame({"cell_id": [f"c{i}" for i in range(n)], "lr": 1e-3, "wd": 1.0, "data_seed": 0,
                          "model_seed": range(n), "activation": "gelu", "budget": 10000, "steps_run": 10000,
                          "t_train": pd.array([t for t, _ in t_values], dtype="Int64"),
                          "t_val": pd.array([v for _, v in t_values], dtype="Int64"),
                          "final_train_acc": 1.0, "final_val_acc": 1.0, "diverged": False})
    return frame.assign(**columns)


def test_n_train_counts_the_split_as_the_data_does():
    assert n_train(DIV47) == int(0.3 * 47 * 46) == 648  # division drops the divisor 0
    assert n_train({"p": 5, "operation": "add", "train_fraction": 0.3}) == 7
    assert n_train({"p": 5, "operation": "add", "arity": 3, "train_fraction": 0.5}) == 62


def test_runs_have_classes_epochs_and_default_hyperparameters():
    runs = runs_table(
        {"b100": cells([(100, 1100), (100, 1101), (100, None), (None, 50), (500, 400)]),
         "full": cells([(10, 20)], noise=[0.1], init_scale=[10.0], lr=[1e-2])},
        {"b100": {**DIV47, "batch_size": 100}, "full": {**DIV47, "p": 5, "operation": "add", "batch_size": 0}})
    assert runs["class"].tolist() == ["comprehension", "grokking", "confusion", "confusion", "comprehension",
                                      "comprehension"]  # a delay of exactly 1000 is comprehension
    first, full = runs.iloc[0], runs.iloc[-1]
    assert (first.n_train, first.batch_size, first.steps_per_epoch) == (648, 100, 7)  # ceil(648 / 100)
    assert first.t_train_epochs == pytest.approx(100 / 7) and first.delay_epochs == pytest.approx(1000 / 7)
    assert first.ratio == pytest.approx(6.48) and (first.noise, first.init_scale) == (0.0, 1.0)
    assert (full.n_train, full.batch_size, full.steps_per_epoch, full.ratio) == (7, 7, 1, 1.0)  # full batch
    assert (full.noise, full.init_scale, full.lr, full.delay) == (0.1, 10.0, 1e-2, 10)
    assert runs["delay"].isna().tolist() == [False, False, True, True, False, False]
    assert runs.loc[4, "delay"] == -100


def test_the_grokking_delay_is_an_option_else_the_study_gap():
    delay = pd.Series([50, 51, None, -5], dtype="Int64")
    assert classify(delay, 50).tolist() == ["comprehension", "grokking", "confusion", "comprehension"]
    assert classify(delay, 1000).tolist() == ["comprehension", "comprehension", "confusion", "comprehension"]
    tables = {"a": cells([(100, 400)]), "b": cells([(100, 400)])}
    settings = {"a": {**DIV47, "batch_size": 8, "grokking_gap": 200}, "b": {**DIV47, "batch_size": 16}}
    assert runs_table(tables, settings)["class"].tolist() == ["grokking", "comprehension"]  # b: 1000
    assert runs_table(tables, settings, grokking_delay=250)["class"].tolist() == ["grokking", "grokking"]


def test_grid_summary_means_over_the_runs_that_reached():
    runs = runs_table({"a": cells([(100, 1100), (300, 3300), (200, None)]), "b": cells([(80, 90)])},
                      {"a": {**DIV47, "batch_size": 8}, "b": {**DIV47, "batch_size": 648}})
    summary = grid_summary(runs).set_index("batch_size")
    a, b = summary.loc[8], summary.loc[648]
    assert (a.runs, a.n_t_train, a.n_t_val, a.n_delay) == (3, 3, 2, 2)
    assert a.t_train == pytest.approx(200) and a.t_val == pytest.approx(2200) and a.delay == pytest.approx(2000)
    assert a.t_val_epochs == pytest.approx(2200 / 81) and a.delay_epochs == pytest.approx(2000 / 81)
    assert (a.confusion, a.comprehension, a.grokking) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert (a.ratio, b.ratio, b.comprehension, b.p, b.budget) == (81.0, 1.0, 1.0, 47, 10000)


def test_comprehension_band_from_runs_or_summary():
    runs = runs_table(
        {"b8": cells([(100, 200)] * 4), "b216": cells([(100, 200)] + [(100, None)] * 3),
         "b1": cells([(100, 5000)] * 3 + [(100, 200)])},
        {"b8": {**DIV47, "batch_size": 8}, "b216": {**DIV47, "batch_size": 216}, "b1": {**DIV47, "batch_size": 1}})
    band = comprehension_band(runs)
    assert band == comprehension_band(grid_summary(runs))
    assert band["cells"] == (81.0, 81.0) and band["n_cells"] == 1  # only batch 8 is mostly comprehension
    # comprehension runs' ratios: 3 (batch 216, outside [20, 800]), 81 x4 (batch 8), 648 (batch 1)
    assert band["n_runs"] == 6
    assert band["runs"] == pytest.approx(tuple(np.percentile([3, 81, 81, 81, 81, 648], [10, 90])))
    assert band["share_in_report_band"] == pytest.approx(5 / 6) and band["report"] == (20.0, 800.0)
    assert band["median_ratio"] == {"confusion": 3.0, "comprehension": 81.0, "grokking": 648.0}


def test_no_comprehension_gives_nan_band():
    runs = runs_table({"a": cells([(100, 5000), (100, None)])}, {"a": {**DIV47, "batch_size": 8}})
    band = comprehension_band(runs)
    assert band["n_runs"] == 0 and band["n_cells"] == 0 and np.isnan(band["runs"]).all()


def synthetic_runs(n: int = 300, rho: float = 0.6, seed: int = 1) -> pd.DataFrame:
    """Delay correlated +rho with batch and -rho with wd (bivariate normal), init scale constant."""
    rng = np.random.default_rng(seed)
    x, w, e = rng.standard_normal((3, n))
    delay = rho * x - rho * w + np.sqrt(1 - 2 * rho**2) * e
    delay[:20] = np.nan  # runs without a delay
    return pd.DataFrame({"batch_size": x, "wd": w, "init_scale": 1.0, "noise": rng.random(n),
                         "lr": rng.random(n), "delay_epochs": delay})


def test_correlations_have_the_right_sign_and_match_pandas():
    runs = synthetic_runs()
    table = correlations(runs, n_boot=500).set_index("hyperparameter")
    used = runs.dropna()
    for name in ("batch_size", "wd"):
        assert table.loc[name, "pearson"] == pytest.approx(used[name].corr(used["delay_epochs"]))
        assert table.loc[name, "spearman"] == pytest.approx(used[name].corr(used["delay_epochs"], method="spearman"))
        assert table.loc[name, "pearson_low"] < table.loc[name, "pearson"] < table.loc[name, "pearson_high"]
    assert table.loc["batch_size", "pearson_low"] > 0.3 and table.loc["wd", "pearson_high"] < -0.3
    assert table.loc["batch_size", "n"] == 280  # the 20 runs without a delay are left out
    assert table["report"].to_dict() == REPORT_CORRELATIONS


def test_bootstrap_intervals_cover_the_true_correlation():
    rho = 0.6
    spearman = 6 / np.pi * np.arcsin(rho / 2)  # Spearman's rho of a bivariate normal
    covered = np.zeros(2)
    for seed in range(20):  # 95 % intervals: fewer than 16 of 20 would happen by chance 0.3 % of the time
        row = correlations(synthetic_runs(n=150, rho=rho, seed=seed), ("batch_size",), n_boot=300).iloc[0]
        covered += [row.pearson_low < rho < row.pearson_high, row.spearman_low < spearman < row.spearman_high]
    assert (covered >= 16).all(), covered


def test_a_constant_hyperparameter_gives_nan_and_the_bootstrap_is_seeded():
    runs = synthetic_runs(n=60)
    table = correlations(runs, n_boot=200, seed=3).set_index("hyperparameter")
    assert table.loc["init_scale", ["pearson", "pearson_low", "spearman_high"]].isna().all()
    assert table.loc["init_scale", "values"] == [1.0]
    again = correlations(runs, n_boot=200, seed=3).set_index("hyperparameter")
    pd.testing.assert_frame_equal(table, again)


@pytest.fixture
def sweep(tmp_path):
    """Members of a small sweep (two p x two batches), noise and init scale swept in one of them."""
    rng = np.random.default_rng(0)
    studies, paths = {}, {}
    for p in (23, 47):
        for batch in (8, 32):
            name = f"bxn_p{p}_b{batch}"
            t_train = rng.integers(50, 500, 6)
            t_val = t_train + rng.integers(0, 3000, 6)
            t = [(int(a), int(b) if k else None) for k, (a, b) in enumerate(zip(t_train, t_val))]
            swept = {"noise": [0.0, 0.01, 0.1, 1.0, 10.0, 0.0], "init_scale": [0.1, 1, 10, 100, 1, 1]}
            extra = swept if p == 47 else {}
            frame = cells(t, lr=rng.choice([1e-4, 1e-3, 1e-2], 6), wd=rng.choice([0.01, 0.1, 1.0], 6), **extra)
            paths[name] = tmp_path / name / "cells.csv"
            io.write_csv(frame, paths[name])
            studies[name] = {**DIV47, "p": p, "batch_size": batch, "task": "modular", "arity": 2, "lr": 1e-3}
    return studies, paths


@pytest.mark.parametrize("kind", [batch_grid.KIND, correlations_kind.KIND])
def test_figures_draw_from_cells_tables(kind, sweep, tmp_path):
    studies, paths = sweep
    spec = {"kind": kind.name, "studies": list(studies), "title": "synthetic sweep"}
    names = kind.inputs(spec, studies, lambda s: [])
    assert list(names) == [f"cells_{i}" for i in range(4)]
    assert names["cells_1"] == [f"results/{list(studies)[1]}/cells.csv"]
    options = kind.options(spec, studies)
    assert options["studies"][0] == {"name": "bxn_p23_b8", "p": 23, "operation": "div", "arity": 2,
                                     "train_fraction": 0.3, "batch_size": 8, "budget": 10000, "threshold": 0.95}
    assert options["grokking_delay"] is None and "lr" not in options["studies"][0]  # None: the studies' gap
    files = {f"cells_{i}": [str(paths[s])] for i, s in enumerate(studies)}
    pdf, png = tmp_path / f"{kind.name}.pdf", tmp_path / f"{kind.name}.png"
    kind.draw(files, {**options, "grokking_delay": 500}, str(pdf), str(png))
    assert pdf.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_both_kinds_take_the_grokking_delay_key():
    for module in (batch_grid, correlations_kind):
        assert module.KIND.keys == ("grokking_delay",)
        assert module.options({"studies": ["a"], "grokking_delay": 200}, {"a": DIV47})["grokking_delay"] == 200


def test_figure_modules_import_without_matplotlib():
    code = ("import sys, grokking.figures.batch_grid, grokking.figures.correlations; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
