"""Appendix figures: phase diagrams faceted by seed or activation (Figs. 7-10), and embedding
trajectories (Figs. 11-12).

Each figure states the grid size and budget it was computed with, read from the data, so a figure
built on a coarse preset says so itself.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from grokking.plots import grid_description, legend_below, phase_legend_handles, phase_panel, save_figure

FACET_LABELS = {"data_seed": "data seed", "model_seed": "model seed", "activation": "activation"}


# Facets in the report's order (appendix B: ReLU, LeakyReLU, Tanh); other values follow, sorted.
LEVEL_ORDER = {"activation": ["relu", "leaky_relu", "tanh"]}


def _levels(phases: pd.DataFrame, column: str | None) -> list:
    if column is None:
        return [None]
    preferred = LEVEL_ORDER.get(column, [])
    values = phases[column].unique()
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


def _facet_title(row_column: str | None, row, col_column: str | None, col) -> str:
    parts = [f"{FACET_LABELS[c]} {v}" for c, v in ((row_column, row), (col_column, col)) if c is not None]
    return ", ".join(parts)


def facet_figure(
    phases: pd.DataFrame, rows: str | None, cols: str | None, pdf: str | Path, png: str | Path,
    title: str = "",
) -> None:
    """One discrete phase diagram per (row, column) value of two cell columns (e.g. data seed x model
    seed for Figs. 7-8, activation for Figs. 9-10), with one shared legend."""
    row_levels, col_levels = _levels(phases, rows), _levels(phases, cols)
    n_rows, n_cols = len(row_levels), len(col_levels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 3.3 * n_rows), squeeze=False,
                             gridspec_kw={"hspace": 0.55, "wspace": 0.35})
    diverged = 0
    for i, row in enumerate(row_levels):
        for j, col in enumerate(col_levels):
            mask = pd.Series(True, index=phases.index)
            if rows is not None:
                mask &= phases[rows] == row
            if cols is not None:
                mask &= phases[cols] == col
            ax = axes[i, j]
            diverged += phase_panel(ax, phases[mask], _facet_title(rows, row, cols, col))
            if j:
                ax.set_ylabel("")
            if i < n_rows - 1:
                ax.set_xlabel("")
    legend_below(fig, axes[-1], phase_legend_handles(diverged))
    fig.suptitle(f"{title} ({grid_description(phases)})" if title else grid_description(phases),
                 y=0.94 if n_rows > 1 else 1.06)
    save_figure(fig, pdf, png)


def trajectory_figure(
    histories: dict[str, dict], phases: pd.DataFrame, pdf: str | Path, png: str | Path,
    max_step: int | None = None, title: str = "",
) -> None:
    """The learned 1-D embedding of every token against steps, one panel per cell, titled with the
    cell's phase (appendix C). ``max_step`` cuts the curves (Fig. 11: the first 2000 steps)."""
    cells = phases.sort_values(["lr", "wd"]).reset_index(drop=True)
    n_cols = 2 if len(cells) > 1 else 1
    n_rows = -(-len(cells) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 3.4 * n_rows), squeeze=False,
                             gridspec_kw={"hspace": 0.5, "wspace": 0.25})
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax, cell in zip(axes.flat, cells.itertuples()):
        if cell.cell_id not in histories:
            raise ValueError(f"no embedding history for cell {cell.cell_id}: was it trained with log_every > 0?")
        history = histories[cell.cell_id]
        steps = np.asarray(history["step"])
        embedding = np.asarray(history["embedding"])  # [snapshots, tokens, dim]
        keep = steps <= max_step if max_step is not None else np.ones_like(steps, dtype=bool)
        colors = plt.get_cmap("viridis")(np.linspace(0, 1, embedding.shape[1]))
        for token in range(embedding.shape[1]):
            ax.plot(steps[keep], embedding[keep, token, 0], color=colors[token], lw=1.2, label=str(token))
        last = int(steps[keep].max())
        ax.set_xlim(0, last)
        ax.set_title(f"lr {cell.lr:.4g}, wd {cell.wd:.3g}: {cell.phase}")
        ax.set_xlabel("optimization steps")
        ax.set_ylabel("embedding $E_a$")
    axes.flat[0].legend(title="token a", fontsize=7, title_fontsize=7, ncol=2, loc="best")
    span = f"first {max_step:,} steps" if max_step is not None else "whole run"
    budget = int(phases["budget"].max())
    fig.suptitle(f"{title} ({span}; budget {budget:,})" if title else f"{span}; budget {budget:,}", y=0.99)
    save_figure(fig, pdf, png)
