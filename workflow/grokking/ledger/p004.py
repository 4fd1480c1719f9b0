"""Claims of the review of grokking papers (paper 004) that our studies test: its author's own
experiments on avoiding grokking on modular addition (no weight decay, low lr, full batch, float64
loss, against batch 50 and lr 7e-2), and the Omnigrok results it cites on MNIST (a large
initialization groks, a small one generalizes at once; holding the weight norm at a good value
removes the delay).

The review's numbers are budgets ("within 3e4 steps"); ours come at the budget of the studies that
ran, which each row's size states. A run's phase follows ``grokking.phases`` with the studies'
grokking gap of ``GROKKING_DELAY`` steps.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

from grokking.delays import GROKKING_DELAY
from grokking.ledger import Claim, Inputs
from grokking.ledger.p001 import listed, runs_size, step_text, steps, study_cells
from grokking.ledger.verdicts import Measured, at_least, at_most, is_true

Measure = Callable[[Inputs, dict[str, Any]], Measured]
Selector = Callable[[list[dict[str, Any]]], int | None]


# ------------------------------------------------------------------ grokking avoided (curve table)
def _avoid_studies(files: Inputs, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Each study of the table: index, label, settings, cells, and its (single) lr, wd and batch."""
    settings = options["settings"]
    studies = []
    for i, (table, study) in enumerate(zip(study_cells(files, settings), settings)):
        studies.append({"index": i, "label": options["labels"][i], "settings": study, "cells": table,
                        "lr": float(table["lr"].max()), "wd": float(table["wd"].max()),
                        "batch": int(study.get("batch_size", 0))})
    return studies


def _full_batch_no_decay(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The studies without the two regularizers the review removes: minibatch noise and weight decay."""
    return [s for s in studies if s["batch"] == 0 and s["wd"] == 0]


def low_lr_full_batch(studies: list[dict[str, Any]]) -> int | None:
    """The review's setting: full batch, no weight decay, the lowest lr of such studies."""
    chosen = sorted(_full_batch_no_decay(studies), key=lambda s: s["lr"])
    return chosen[0]["index"] if chosen else None


def high_lr_full_batch(studies: list[dict[str, Any]]) -> int | None:
    """Full batch, no weight decay, an lr above the review's setting's (the highest)."""
    chosen = sorted(_full_batch_no_decay(studies), key=lambda s: s["lr"])
    return chosen[-1]["index"] if len(chosen) > 1 and chosen[-1]["lr"] > chosen[0]["lr"] else None


def minibatch_no_decay(studies: list[dict[str, Any]]) -> int | None:
    """Minibatches (the review's 50), no weight decay."""
    chosen = [s for s in studies if s["batch"] > 0 and s["wd"] == 0]
    return chosen[0]["index"] if chosen else None


REVIEW_BUDGET = 30000  # the review's "within 3e4 steps"


def generalized_share(select: Selector, what: str) -> Measure:
    """Measure: the share of the selected study's seeds whose test accuracy reached the threshold
    within the budget; NaN when the table has no such study, or when no seed generalized within a
    budget shorter than the review's 3e4 steps (it may still do so before 3e4)."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        studies = _avoid_studies(files, options)
        index = select(studies)
        if index is None:
            return Measured(math.nan, f"no {what} study in this table", runs_size(options["settings"], []))
        study = studies[index]
        cells = study["cells"]
        t_val = steps(cells["t_val"])
        reached = ~np.isnan(t_val)
        size = f"{runs_size([study['settings']], [cells])}; lr {study['lr']:g}, weight decay {study['wd']:g}"
        text = (f"'{study['label']}': {int(reached.sum())} of {len(cells)} seeds reached the threshold (T_val "
                f"{', '.join(step_text(t) for t in t_val)}; final test acc {listed(cells['final_val_acc'].round(3))})")
        budget = int(cells["budget"].max()) if len(cells) else 0
        if not reached.any() and budget < REVIEW_BUDGET:
            return Measured(math.nan, f"not testable: budget {budget:,} < 3e4 steps; {text}", size, n=len(cells))
        return Measured(float(reached.mean()) if len(cells) else math.nan, text, size, n=len(cells))
    return measure


# ------------------------------------------------------------------ Omnigrok: init scale (scale sweep)
def _scale_runs(files: Inputs, options: dict[str, Any]) -> pd.DataFrame:
    """Every run of the sweep (``ablation_plots.scale_table``) with its study's index and phase."""
    from grokking.ablation_plots import scale_table
    from grokking.curve_plots import read_cells
    from grokking.phases import classify

    frames = []
    for i, study in enumerate(options["studies"]):
        cells = read_cells(files[f"cells_{i}"][0])
        table = scale_table(cells, study)
        table["study"] = i
        table["budget"] = int(cells["budget"].max())
        table["phase"] = [classify(a, b, GROKKING_DELAY) for a, b in zip(table["t_train"], table["t_val"])]
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def scale_size(options: dict[str, Any], runs: pd.DataFrame) -> str:
    """'MNIST, 1,000 images, batch 200; 21 init scales 0.1-10, 1 run each, 100,000 steps'."""
    studies = options["studies"]
    subsets = listed([f"{s['subset_size']:,}" for s in studies])
    batches = listed([s["batch_size"] for s in studies])
    budgets = ", ".join(f"{int(b):,}" for b in sorted(runs["budget"].unique()))
    per = runs.groupby(["study", "init_scale"]).size()
    each = f"{per.min()}" if per.min() == per.max() else f"{per.min()}-{per.max()}"
    return (f"MNIST MLP, {subsets} images, batch {batches}; {runs['init_scale'].nunique()} init scales "
            f"{runs['init_scale'].min():.3g}-{runs['init_scale'].max():.3g}, {each} run{'s' if per.max() > 1 else ''} "
            f"each, {budgets} steps")


def _run_text(row: Any) -> str:
    """'alpha 7.94: grokking (T_train 1,200, T_val 31,000)'."""
    return f"alpha {row.init_scale:.3g}: {row.phase} (T_train {step_text(row.t_train)}, T_val {step_text(row.t_val)})"


def large_init_groks(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the share of grokking runs at the init scale nearest (in log) each study's own
    ``init_scale`` (Omnigrok's 8), over those runs that reached a verdict: memorization (fitted, not
    yet generalized) says nothing about grokking later and is left out; NaN if all are so."""
    runs = _scale_runs(files, options)
    chosen = []
    for i, study in enumerate(options["studies"]):
        mine = runs[runs["study"] == i]
        distance = (np.log(mine["init_scale"]) - math.log(float(study["init_scale"]))).abs()
        chosen.append(mine[distance == distance.min()])
    near = pd.concat(chosen, ignore_index=True)
    decided = near[near["phase"] != "memorization"]
    text = "; ".join(_run_text(r) for r in near.itertuples())
    value = float((decided["phase"] == "grokking").mean()) if len(decided) else math.nan
    return Measured(value, text, scale_size(options, runs), n=len(decided))


def small_init_delay(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the longest delay T_val - T_train of the runs at init scale <= 1 (the default
    initialization or smaller) that fitted their training set; a run that never generalized counts
    as an infinite delay."""
    runs = _scale_runs(files, options)
    small = runs[runs["init_scale"] <= 1.0]
    fitted = small[small["t_train"].notna()]
    size = scale_size(options, runs)
    if fitted.empty:
        return Measured(math.nan, f"no run at alpha <= 1 fitted its training set ({len(small)} runs)", size, n=0)
    delays = np.where(fitted["t_val"].isna(), math.inf, steps(fitted["t_val"]) - steps(fitted["t_train"]))
    text = "; ".join(_run_text(r) for r in small.itertuples())
    longest = float(delays.max())
    return Measured(longest, f"longest delay {'never generalized' if math.isinf(longest) else f'{longest:,.0f} steps'} "
                    f"({text})", size, n=len(fitted))


# ------------------------------------------------------------------ Omnigrok: LU maps (norm held)
def _lu_runs(files: Inputs, options: dict[str, Any]) -> pd.DataFrame:
    """Every run of the maps: training-set size, init scale (= the held weight norm over the
    initial one), T values and final accuracies."""
    from grokking.curve_plots import read_cells

    frames = []
    for i, study in enumerate(options["studies"]):
        cells = read_cells(files[f"cells_{i}"][0])
        scale = cells["init_scale"] if "init_scale" in cells else pd.Series(study["init_scale"], index=cells.index)
        frames.append(pd.DataFrame({"subset_size": int(study["subset_size"]), "init_scale": scale.astype(float),
                                    "t_train": steps(cells["t_train"]), "t_val": steps(cells["t_val"]),
                                    "final_train_acc": cells["final_train_acc"].astype(float),
                                    "final_test_acc": cells["final_val_acc"].astype(float),
                                    "budget": cells["budget"].astype(int)}))
    return pd.concat(frames, ignore_index=True).sort_values(["subset_size", "init_scale"], kind="stable")


def lu_size(options: dict[str, Any], runs: pd.DataFrame) -> str:
    """'MNIST MLP, norm held; 28 training-set sizes 10-60,000 x 21 init scales 0.1-10, 10,000 steps'."""
    sizes = sorted(runs["subset_size"].unique())
    budgets = ", ".join(f"{int(b):,}" for b in sorted(runs["budget"].unique()))
    return (f"MNIST MLP, {'norm held' if options['held'] else 'norm free'}; {len(sizes)} training-set sizes "
            f"{sizes[0]:,}-{sizes[-1]:,} x {runs['init_scale'].nunique()} init scales "
            f"{runs['init_scale'].min():.3g}-{runs['init_scale'].max():.3g}, {budgets} steps")


def _held_or_nan(options: dict[str, Any], runs: pd.DataFrame) -> Measured | None:
    """NaN (inconclusive) where the maps' studies let the norm free: they say nothing of a held norm."""
    if not options["held"]:
        return Measured(math.nan, "the weight norm was not held: these maps do not test the claim",
                        lu_size(options, runs))
    return None


def lu_peak_gain(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: median over training-set sizes of how far the best final test accuracy over alpha
    rises above the better of the two ends of the alpha range. Omnigrok's U (test loss against the
    weight norm) makes it large: too small a norm cannot fit, too large a norm memorizes."""
    runs = _lu_runs(files, options)
    skipped = _held_or_nan(options, runs)
    if skipped is not None:
        return skipped
    gains, parts = [], []
    for size, group in runs.groupby("subset_size"):
        if group["init_scale"].nunique() < 3:
            continue
        test = group["final_test_acc"].to_numpy()
        best = int(np.argmax(test))
        gains.append(float(test[best] - max(test[0], test[-1])))
        parts.append(f"{size:,}: best {test[best]:.2f} at alpha {group['init_scale'].iloc[best]:.3g}, ends "
                     f"{test[0]:.2f} / {test[-1]:.2f}")
    if not gains:
        return Measured(math.nan, "no training-set size with 3 or more init scales", lu_size(options, runs))
    value = float(np.median(gains))
    return Measured(value, f"{value:+.2f} (median of {len(gains)} sizes; " + "; ".join(parts) + ")",
                    lu_size(options, runs), n=len(gains))


def lu_best_no_delay(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: over the training-set sizes whose best-alpha run (highest final test accuracy)
    fitted and generalized, the share where it generalized within ``GROKKING_DELAY`` steps of fitting
    (comprehension, no grokking)."""
    runs = _lu_runs(files, options)
    skipped = _held_or_nan(options, runs)
    if skipped is not None:
        return skipped
    quick, parts = [], []
    for size, group in runs.groupby("subset_size"):
        best = group.loc[group["final_test_acc"].idxmax()]
        if math.isnan(best["t_train"]) or math.isnan(best["t_val"]):
            continue
        delay = best["t_val"] - best["t_train"]
        quick.append(delay < GROKKING_DELAY)
        parts.append(f"{size:,} (alpha {best['init_scale']:.3g}): {delay:,.0f}")
    sizes = runs["subset_size"].nunique()
    if not quick:
        return Measured(math.nan, f"no size's best run fitted and generalized ({sizes} sizes)", lu_size(options, runs),
                        n=0)
    return Measured(float(np.mean(quick)), f"{sum(quick)} of {len(quick)} sizes without a delay (of {sizes}; "
                    "delay of the best alpha in steps: " + "; ".join(parts) + ")", lu_size(options, runs), n=len(quick))


_TABLE = "p004_grokking_avoided_table"
_REACHED = "share of seeds whose test accuracy reaches 95 % within the budget"

CLAIMS = (
    Claim("004-full-batch-avoids", "004", "Power et al.'s section: the reviewer's experiments",
          "No weight decay, a low lr, full batch and a float64 loss avoid generalization on modular addition "
          "within 3e4 steps.", _REACHED, "0 (no generalization in 3e4 steps)", _TABLE,
          generalized_share(low_lr_full_batch, "full-batch, no-decay"), at_most(0.0)),
    Claim("004-batch50-generalizes", "004", "comments: the reviewer's batch-size experiment",
          "The same setting with batch 50 generalizes within 3e4 steps (implicit regularization).", _REACHED,
          "generalizes within 3e4 steps", _TABLE, generalized_share(minibatch_no_decay, "minibatch"), at_least(0.5)),
    Claim("004-lr-generalizes", "004", "comments: the reviewer's learning-rate experiment",
          "Full batch with lr 7e-2 also generalizes within 3e4 steps (though less stably).", _REACHED,
          "generalizes within 3e4 steps", _TABLE, generalized_share(high_lr_full_batch, "higher-lr"),
          at_least(0.5)),
    Claim("004-large-init-groks", "004", "Omnigrok's section and comments (cited)",
          "On MNIST a large initialization (x 8) makes the model grok.",
          "share of runs at the init scale nearest 8 that grok (memorization without a verdict is left out)",
          "groks", "p004_omnigrok_init_scale", large_init_groks, is_true()),
    Claim("004-small-init-immediate", "004", "Tale of Two Circuits' section (citing Omnigrok)",
          "With a small initialization MNIST generalizes at once.",
          "longest T_val - T_train of the runs at init scale <= 1 (never: infinite)", "no delay",
          "p004_omnigrok_init_scale", small_init_delay, at_most(GROKKING_DELAY, unit=" steps")),
    Claim("004-lu-alpha-matters", "004", "Omnigrok's section (cited): the LU mechanism",
          "With the weight norm held fixed, generalization depends on the norm: test accuracy peaks at an "
          "intermediate alpha.", "median gain of the best test accuracy over the better end of the alpha range",
          "U-shaped test loss", "p004_omnigrok_lu_maps", lu_peak_gain, at_least(0.1)),
    Claim("004-lu-no-delay", "004", "comments: Omnigrok constrains the parameter norm",
          "Holding the weight norm at a good value removes the delay: the best alpha generalizes as it fits.",
          f"share of training-set sizes whose best-alpha run generalizes within {GROKKING_DELAY:,} steps of "
          "fitting", "no delay", "p004_omnigrok_lu_maps", lu_best_no_delay, at_least(0.8, min_n=2)),
)
