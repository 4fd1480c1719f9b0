"""Grokking delays of many modular-arithmetic runs, in steps and epochs (paper 003, sections 3.1-3.2).

The report (course project "Explaining grokking") measures T_train and T_val, the first steps at which
train and validation accuracy reach 95 %, and their difference, the grokking delay. It classes every
run as grokking (delay > 1000 steps), comprehension (delay < 1000) or confusion (a threshold never
reached, so memorization counts as confusion here), and reads the delay against the training-set size
and the batch (Table 2, Fig. 4) and against five hyperparameters (Table 1, Fig. 3). Everything here
is a pure function of the studies' cells tables, so the figures and the tests share one definition.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from grokking.grid import OPTIONAL_AXES, axis_column

CLASSES = ("confusion", "comprehension", "grokking")
GROKKING_DELAY = 1000  # steps; the report's boundary between comprehension and grokking
HYPERPARAMETERS = ("batch_size", "noise", "init_scale", "lr", "wd")
# Table 1's "correlation to grokking delay (epoch)", from wandb's parallel-coordinates panel.
REPORT_CORRELATIONS = {"batch_size": 0.538, "noise": 0.123, "init_scale": -0.001, "lr": -0.063, "wd": -0.26}
REPORT_BAND = (20.0, 800.0)  # "comprehension ... ratio mostly ranging from 20 to 800" (section 3.2)
STEP_COLUMNS = ("t_train", "t_val", "delay")


def n_train(settings: dict[str, Any]) -> int:
    """Training equations of a modular study: ``int(train_fraction * n)`` as the data split takes them,
    with n = p^arity equations (division drops the p with divisor 0)."""
    p, arity = int(settings["p"]), int(settings.get("arity", 2))
    n = p**arity - (p if settings["operation"] == "div" else 0)
    return int(settings["train_fraction"] * n)


def classify(delay: pd.Series, grokking_delay: int = GROKKING_DELAY) -> pd.Series:
    """Class of each run from its delay in steps (missing: a threshold was never reached). A delay of
    exactly ``grokking_delay`` is comprehension: the report's "< 1000" and "> 1000" leave it open."""
    reached = delay.notna().to_numpy()
    late = delay.fillna(0).to_numpy() > grokking_delay
    return pd.Series(np.where(~reached, "confusion", np.where(late, "grokking", "comprehension")),
                     index=delay.index)


def runs_table(cells_by_study: dict[str, pd.DataFrame], settings: dict[str, dict[str, Any]],
               grokking_delay: int | None = None) -> pd.DataFrame:
    """Every run of every study, with its study's p, batch (``batch_size: 0`` = the whole training
    set), n_train, steps per epoch (ceil(n_train / batch): the last batch is smaller, as the trainer
    does), T_train, T_val and delay in steps (nullable) and in epochs, its class, the ratio
    n_train / batch, and its hyperparameters (noise 0 and init scale 1 where a study has no such axis).
    The class boundary is ``grokking_delay``, else the study's ``grokking_gap``, else 1000 steps."""
    frames = []
    for study, cells in cells_by_study.items():
        s = settings[study]
        train = n_train(s)
        batch = int(s["batch_size"]) or train
        gap = grokking_delay if grokking_delay is not None else s.get("grokking_gap", GROKKING_DELAY)
        frame = pd.DataFrame({"study": study, "cell_id": cells["cell_id"], "p": int(s["p"]),
                              "operation": s["operation"], "n_train": train, "batch_size": batch,
                              "steps_per_epoch": -(-train // batch), "ratio": train / batch,
                              "grokking_delay": int(gap)})
        frame["lr"], frame["wd"] = cells["lr"].astype(float), cells["wd"].astype(float)
        for name in OPTIONAL_AXES:
            frame[name] = axis_column(cells, name).astype(float)
        for name in ("data_seed", "model_seed", "budget", "diverged"):
            frame[name] = cells[name]
        frame["t_train"] = cells["t_train"].astype("Int64")
        frame["t_val"] = cells["t_val"].astype("Int64")
        frames.append(frame)
    runs = pd.concat(frames, ignore_index=True)
    runs["delay"] = runs["t_val"] - runs["t_train"]
    for name in STEP_COLUMNS + ("budget",):
        runs[f"{name}_epochs"] = runs[name].astype(float) / runs["steps_per_epoch"]
    runs["class"] = pd.concat([classify(group["delay"], gap) for gap, group in runs.groupby("grokking_delay")])
    return runs


def grid_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (n_train, batch_size): mean T_train, T_val and delay in steps and epochs over the
    runs that reached them (``n_t_train`` etc. say how many), the count and share of each class, the
    ratio n_train / batch, the largest budget and the number of runs."""
    frame = runs.assign(**{c: runs[c].astype(float) for c in STEP_COLUMNS})
    for name in CLASSES:
        frame[f"n_{name}"] = (frame["class"] == name).astype(int)
    means = {f"{c}{unit}": (f"{c}{unit}", "mean") for c in STEP_COLUMNS for unit in ("", "_epochs")}
    counts = {f"n_{c}": (c, "count") for c in STEP_COLUMNS}
    classes = {f"n_{name}": (f"n_{name}", "sum") for name in CLASSES}
    summary = frame.groupby(["n_train", "batch_size"]).agg(
        p=("p", "min"), ratio=("ratio", "first"), steps_per_epoch=("steps_per_epoch", "first"),
        runs=("cell_id", "size"), budget=("budget", "max"), **means, **counts, **classes).reset_index()
    for name in CLASSES:
        summary[name] = summary[f"n_{name}"] / summary["runs"]
    return summary


def comprehension_band(table: pd.DataFrame) -> dict[str, Any]:
    """Where comprehension lies in the ratio n_train / batch, from a runs table or its grid summary.

    Two readings of the report's "mostly from 20 to 800":
    - ``cells``: the smallest and largest ratio of the grid cells where comprehension is the most
      common class (ties with another class included), and how many such cells there are;
    - ``runs``: the 10th and 90th percentiles (numpy's linear interpolation) of the ratio over all
      comprehension runs, so 80 % of them lie inside; with ``share_in_report_band``, the share of
      comprehension runs whose ratio lies in the report's [20, 800].
    ``median_ratio`` gives each class's median ratio over its runs, to see which side confusion and
    grokking lie on. Values are NaN where no run is comprehension.
    """
    summary = table if "n_comprehension" in table else grid_summary(table)
    shares = summary[list(CLASSES)]
    top = summary[shares["comprehension"].gt(0) & shares["comprehension"].ge(shares.max(axis=1))]
    ratios = {name: np.repeat(summary["ratio"].to_numpy(), summary[f"n_{name}"].to_numpy()) for name in CLASSES}
    compr = ratios["comprehension"]
    p10, p90 = np.percentile(compr, [10, 90]) if len(compr) else (np.nan, np.nan)
    inside = ((compr >= REPORT_BAND[0]) & (compr <= REPORT_BAND[1])).mean() if len(compr) else np.nan
    return {"cells": (float(top["ratio"].min()), float(top["ratio"].max())) if len(top) else (np.nan, np.nan),
            "n_cells": len(top), "runs": (float(p10), float(p90)), "n_runs": len(compr),
            "share_in_report_band": float(inside), "report": REPORT_BAND,
            "median_ratio": {name: float(np.median(r)) if len(r) else np.nan for name, r in ratios.items()}}


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``x`` and ``y`` [resamples, n]; NaN where a row is constant."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


def _row_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along each row (ties share their mean rank, as Spearman's rho needs)."""
    return pd.DataFrame(values).rank(axis=1).to_numpy()


def _bootstrap(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, chunk: int = 250) -> tuple[np.ndarray, ...]:
    """Pearson and Spearman r of ``n_boot`` resamples of the runs (with replacement). The same seed
    draws the same resamples for every hyperparameter, so their intervals are comparable."""
    rng = np.random.default_rng(seed)
    pearson, spearman = [], []
    for start in range(0, n_boot, chunk):  # bounded memory: [chunk, n] at a time
        idx = rng.integers(0, len(x), size=(min(chunk, n_boot - start), len(x)))
        xs, ys = x[idx], y[idx]
        pearson.append(_row_pearson(xs, ys))
        spearman.append(_row_pearson(_row_ranks(xs), _row_ranks(ys)))
    return np.concatenate(pearson), np.concatenate(spearman)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """Percentile 95 % interval; resamples that came out constant (NaN) are left out."""
    samples = samples[np.isfinite(samples)]
    return tuple(np.percentile(samples, [2.5, 97.5])) if len(samples) else (np.nan, np.nan)


def correlations(runs: pd.DataFrame, hyperparameters: Sequence[str] = HYPERPARAMETERS,
                 target: str = "delay_epochs", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Correlation of each hyperparameter with ``target`` over the runs that have one (runs that never
    reached a threshold have no delay and are left out; ``n`` says how many count).

    ``pearson`` is on raw values, as wandb computes the "correlation" beside its parallel-coordinates
    plot that the report quotes (so a batch of 1024 weighs far more than one of 8); ``spearman`` is on ranks and
    does not depend on the scale. Each comes with a percentile bootstrap 95 % interval over runs
    resampled with replacement (``seed``). A hyperparameter or delay that never changes, or fewer
    than 3 runs, gives NaN. ``values``: every value tried, over all runs.
    """
    used = runs[runs[target].notna()]
    y = used[target].to_numpy(dtype=float)
    rows = []
    for name in hyperparameters:
        x = used[name].to_numpy(dtype=float)
        row = {"hyperparameter": name, "values": sorted(set(runs[name].astype(float))), "n": len(x),
               "report": REPORT_CORRELATIONS.get(name, np.nan)}
        if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            pearson, spearman = _bootstrap(x, y, n_boot, seed)
            row["pearson"] = float(_row_pearson(x[None], y[None])[0])
            row["spearman"] = float(_row_pearson(_row_ranks(x[None]), _row_ranks(y[None]))[0])
            row["pearson_low"], row["pearson_high"] = _interval(pearson)
            row["spearman_low"], row["spearman_high"] = _interval(spearman)
        rows.append(row)
    columns = ["hyperparameter", "values", "n", "pearson", "pearson_low", "pearson_high", "spearman",
               "spearman_low", "spearman_high", "report"]
    return pd.DataFrame(rows).reindex(columns=columns)
