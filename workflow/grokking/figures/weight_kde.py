"""Hidden weights of a sparse-parity run at its snapshot epochs (paper 002, Fig. 3): a kernel density
estimate of all entries of the hidden layer's weight matrix per drawn epoch (left), and against every
snapshot epoch the share of weights with |w| < 0.01 and their standard deviation (right), with the
run's T_train and T_val marked, so "the weights coalesce around zero" reads off the figure as numbers.

Same inputs and keys (``epochs``, ``model_seed``) as ``representations``. Matplotlib and scipy are
imported by ``draw`` only: config validation reads this module.
"""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Inputs
from grokking.figures.representations import cell_text, chosen_run, inputs, options

GRID_POINTS = 400  # where each density is evaluated
SHARE_COLOR, STD_COLOR = "C0", "C3"


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from matplotlib.lines import Line2D

    from grokking import parity_analysis as pa
    from grokking.plots import save_figure

    cell, history = chosen_run(files, options)
    snapshots = history["snapshots"]
    epochs = np.asarray(snapshots["epoch"], dtype=int)
    weights = np.asarray(snapshots["hidden.weight"], dtype=float)  # [S, width, n]
    order = pa.snapshot_indices(snapshots, options.get("epochs"))

    fig, (kde_ax, stats_ax) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.15, 1]})
    drawn = weights[order]
    grid = np.linspace(drawn.min(), drawn.max(), GRID_POINTS)
    shades = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, len(order)))
    for i, color in zip(order, shades):
        density = pa.weight_density(weights[i], grid)
        if np.isnan(density).all():  # every weight equal: a spike, drawn as a line
            kde_ax.axvline(float(weights[i].flat[0]), color=color, label=f"epoch {epochs[i]:,} (all equal)")
        else:
            kde_ax.plot(grid, density, color=color, lw=1.3, label=f"epoch {epochs[i]:,}")
    kde_ax.set_xlabel("hidden-layer weight w")
    kde_ax.set_ylabel("density")
    kde_ax.set_title(f"KDE of all {weights[0].size:,} hidden weights (Gaussian, Scott's bandwidth)", fontsize=9)
    kde_ax.legend(fontsize="small", ncol=1 + len(order) // 8)

    stats = pa.weight_stats(weights)
    stats_ax.plot(epochs, stats["near_zero"], color=SHARE_COLOR, marker="o", ms=3)
    stats_ax.plot(epochs[order], stats["near_zero"][order], ls="", marker="o", ms=7, mfc="none", color=SHARE_COLOR)
    stats_ax.set_ylim(0, 1.02)
    stats_ax.set_xlabel("epoch (snapshots; circled: drawn on the left)")
    stats_ax.set_ylabel(f"share of weights with |w| < {pa.NEAR_ZERO:g}", color=SHARE_COLOR)
    std_ax = stats_ax.twinx()
    std_ax.plot(epochs, stats["std"], color=STD_COLOR, marker="s", ms=3)
    std_ax.set_ylim(0, None)
    std_ax.set_ylabel("standard deviation of the weights", color=STD_COLOR)
    marks = []
    for t, style, name in ((cell.t_train, "--", "T_train"), (cell.t_val, "-", "T_val")):
        if not pd.isna(t):
            stats_ax.axvline(int(t), color="gray", ls=style, lw=1)
            marks.append(Line2D([], [], color="gray", ls=style, lw=1, label=f"{name} = {int(t):,}"))
        else:
            marks.append(Line2D([], [], color="none", label=f"{name}: not reached"))
    stats_ax.legend(handles=marks, fontsize="small", loc="center right")
    stats_ax.set_title(f"share near zero (left axis) and spread (right axis)\nlast snapshot: share "
                       f"{stats['near_zero'][-1]:.2f}, std {stats['std'][-1]:.3g}", fontsize=9)
    fig.tight_layout()
    heading = [options["title"]] if options.get("title") else []
    fig.suptitle("\n".join(heading + [options["study"], cell_text(cell)]), y=1.0, va="bottom", fontsize="medium")
    save_figure(fig, pdf, png)


KIND = FigureKind("weight_kde", inputs, options, draw, caption="weight_kde.rst", category="Sparse parity",
                  n_studies=1, keys=("epochs", "model_seed"))
