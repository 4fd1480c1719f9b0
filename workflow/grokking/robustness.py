"""How robust a phase diagram is to the seeds: per-cell agreement of the phase across seed pairs.

One diagram per (data_seed, model_seed) on the same lr x wd grid; for each cell the majority phase and
how many seed pairs agree with it. A diagram whose phases hold across seeds is a finding; one whose
cells flip from seed to seed is noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from grokking.phases import PHASE_COLORS, PHASES, check_phase_labels
from grokking.plots import (
    IMAGE, DiagramGrid, _label_axes, legend_below, mark_diverged, phase_legend_handles, save_figure,
)

SEEDS = ("data_seed", "model_seed")
# Hatches for the majority panel: none when unanimous, light when a strict majority agrees, dense when
# the majority phase is only a plurality (at most half of the runs).
_HATCH_MAJORITY, _HATCH_PLURALITY = "///", "xxx"
_HATCH_COLOR = "0.55"  # mid gray: visible on every phase color, black and yellow alike


def phase_agreement(phases: pd.DataFrame) -> pd.DataFrame:
    """Per (lr, wd): runs, majority phase, how many runs agree with it, and the count of each phase.

    Columns: lr, wd, runs, majority_phase, agree, n_comprehension, n_grokking, n_memorization,
    n_confusion, n_diverged (runs whose loss became NaN/Inf, also counted in their phase), diverged (any
    did); sorted by lr then wd. The majority phase is the most frequent one; ties go to the phase first
    in the fixed order comprehension, grokking, memorization, confusion.
    Rows are grouped by lr and wd only: the caller keeps one activation. Two rows for the same seed
    pair in one cell raise, since they mean the table still mixes activations (or budgets).
    """
    check_phase_labels(phases)
    seeds = [c for c in SEEDS if c in phases.columns]
    if seeds and phases.duplicated(["lr", "wd", *seeds]).any():
        raise ValueError("a seed pair appears twice in one (lr, wd) cell: filter one activation first")
    counts = (
        pd.crosstab([phases["lr"], phases["wd"]], phases["phase"])
        .reindex(columns=list(PHASES), fill_value=0)
        .sort_index()
    )
    values = counts.to_numpy()
    best = values.argmax(axis=1)  # first maximum in PHASES: the documented tie-break
    out = pd.DataFrame({
        "lr": counts.index.get_level_values("lr").to_numpy(),
        "wd": counts.index.get_level_values("wd").to_numpy(),
        "runs": values.sum(axis=1).astype(int),
        "majority_phase": [PHASES[k] for k in best],
        "agree": values[np.arange(len(values)), best].astype(int),
    })
    for k, p in enumerate(PHASES):
        out[f"n_{p}"] = values[:, k].astype(int)
    diverged = phases.groupby(["lr", "wd"])["diverged"].sum().reindex(counts.index)
    out["n_diverged"] = diverged.to_numpy().astype(int)
    out["diverged"] = out["n_diverged"] > 0
    if "budget" in phases:
        out["budget"] = int(phases["budget"].max())  # the figure states what it was computed with
    return out


def _text_color(rgb) -> str:
    """Black on light cells, white on dark ones."""
    r, g, b = rgb[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _robustness_row(fig: plt.Figure, axes, agreement: pd.DataFrame, label: str) -> int:
    """One study: majority phase (hatched where seeds disagree) beside the agreement share; returns
    the cells where some seed pair diverged (marked with a dot)."""
    grid = DiagramGrid.of(agreement)
    codes = grid.image(agreement, lambda r: PHASES.index(r.majority_phase))
    share = grid.image(agreement, lambda r: r.agree / r.runs)
    axes[0].imshow(codes, cmap=ListedColormap([PHASE_COLORS[p] for p in PHASES]), vmin=-0.5,
                   vmax=len(PHASES) - 0.5, **IMAGE)
    for r in agreement.itertuples():
        hatch = None if r.agree == r.runs else (_HATCH_MAJORITY if 2 * r.agree > r.runs else _HATCH_PLURALITY)
        if hatch:
            x, y = grid.position(r.lr, r.wd)
            axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch=hatch,
                                        edgecolor=_HATCH_COLOR, linewidth=0))
    prefix = f"{label}: " if label else ""
    _label_axes(axes[0], grid, f"{prefix}majority phase across seeds")
    diverged = mark_diverged(axes[0], agreement, grid)

    # a blue scale: no confusion with the phase colors (yellow-green, gold) of the left panel
    cmap = plt.get_cmap("Blues")
    image = axes[1].imshow(share, cmap=cmap, vmin=0, vmax=1, **IMAGE)
    _label_axes(axes[1], grid, f"{prefix}runs agreeing with it")
    axes[1].set_ylabel("")  # same rows as the left panel
    for ax in axes:
        # thin white cell borders so neighbouring hatched cells stay distinct
        ax.set_xticks(np.arange(len(grid.lrs) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(grid.wds) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    if max(len(grid.lrs), len(grid.wds)) <= 21:
        # font from the cell width: the "k/n" label (about 3 characters) must fit in one cell
        fig.canvas.draw()
        width_pt = axes[1].get_window_extent().width / fig.dpi * 72 / len(grid.lrs)
        size = float(np.clip(width_pt / 2.6, 3.5, 9))
        for r in agreement.itertuples():
            x, y = grid.position(r.lr, r.wd)
            axes[1].text(x, y, f"{r.agree}/{r.runs}", ha="center", va="center",
                         fontsize=size, color=_text_color(cmap(r.agree / r.runs)))
    cax = axes[1].inset_axes([1.04, 0.0, 0.05, 1.0])
    fig.colorbar(image, cax=cax).set_label("share of runs with the majority phase")
    return diverged


def robustness_figure(
    panels: list[tuple[str, pd.DataFrame]], pdf: str | Path, png: str | Path, title: str = "",
) -> None:
    """One row per (label, agreement table): majority phase (left) beside the agreement share (right).

    Left: each cell colored by its majority phase; no hatch when every run agrees, ``///`` when a
    strict majority does, ``xxx`` when the majority is only a plurality. Right: agree/runs on a
    sequential scale with a colorbar. On grids up to 21 x 21 each cell of the right panel also reads
    "agree/runs".
    """
    fig, axes = plt.subplots(len(panels), 2, figsize=(10.0, 4.4 * len(panels)), squeeze=False,
                             gridspec_kw={"wspace": 0.32, "hspace": 0.45})
    diverged = sum(_robustness_row(fig, row_axes, agreement, label)
                   for row_axes, (label, agreement) in zip(axes, panels))
    agreements = pd.concat([agreement for _, agreement in panels])
    handles = phase_legend_handles(diverged, what="cells where a seed pair diverged")
    handles += [
        Patch(facecolor="white", edgecolor=_HATCH_COLOR, label="all agree"),
        Patch(facecolor="white", edgecolor=_HATCH_COLOR, hatch=_HATCH_MAJORITY, label="> half agree"),
        Patch(facecolor="white", edgecolor=_HATCH_COLOR, hatch=_HATCH_PLURALITY, label="\u2264 half agree"),
    ]
    legend_below(fig, axes[-1], handles, ncol=4, fontsize=9)
    runs = sorted(set(agreements["runs"]))
    n_runs = f"{runs[0]} seed pairs" if len(runs) == 1 else f"{runs[0]}\u2013{runs[-1]} seed pairs"
    budget = f", {int(agreements['budget'].max()):,} steps" if "budget" in agreements else ""
    fig.suptitle(f"{title} ({n_runs}{budget})" if title else f"{n_runs}{budget}", y=0.99 if len(panels) == 1 else 0.95)
    save_figure(fig, pdf, png)
