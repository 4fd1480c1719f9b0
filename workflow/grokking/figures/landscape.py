"""Loss landscapes around each run's final parameters (paper 003, section 3.3, Fig. 5 and Table 4):
one row per run, train and validation loss contours side by side, titled with the run's phase and
each surface's range and roughness (``grokking.landscape.surface_stats``), so the report's "grokking
optima are more uneven, the loss range up to 8x larger" reads off the figure as numbers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grokking.figures import FigureKind, Histories, Inputs, Studies

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd

PANELS = (("train_loss", "train loss"), ("val_loss", "validation loss"))
LEVELS = 16  # contour levels per row, log-spaced: losses near an optimum span decades


def landscape_file(study: str, normalization: str = "filter") -> str:
    """Where ``python -m grokking landscape`` writes a study's landscapes along directions of one
    normalization (filter: Li et al.; tensor: 003's code)."""
    return f"results/{study}/landscape_{normalization}.pt"


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """``landscape_<i>`` and ``cells_<i>`` of the i-th study."""
    files: Inputs = {}
    for i, study in enumerate(spec["studies"]):
        files[f"landscape_{i}"] = [landscape_file(study, spec.get("normalization", "filter"))]
        files[f"cells_{i}"] = [f"results/{study}/cells.csv"]
    return files


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    """Labels, and the delay above which a run groks: the entry's ``grokking_delay``, else each
    study's ``grokking_gap`` (the phase diagrams' rule), else the report's 1000 steps."""
    return {"title": spec.get("title", ""), "labels": list(spec.get("labels", spec["studies"])),
            "gaps": [int(spec.get("grokking_delay", studies[s].get("grokking_gap", 1000))) for s in spec["studies"]]}


def run_title(label: str, cell: Any, gap: int) -> str:
    """'label: lr 0.001, wd 1, seeds d0/m1 | T_train 400, T_val 3,000, delay 2,600: grokking', the
    class by 003's rule (``grokking.delays.classify``: grokking above the gap, comprehension up to it,
    confusion when a threshold was never reached), as in its batch-size figures."""
    import pandas as pd

    from grokking.delays import classify

    t_train, t_val = (None if pd.isna(t) else int(t) for t in (cell.t_train, cell.t_val))
    steps = lambda t: "not reached" if t is None else f"{t:,}"  # noqa: E731
    delay = f", delay {t_val - t_train:,}" if t_train is not None and t_val is not None else ""
    return (f"{label}: lr {cell.lr:g}, wd {cell.wd:g}, seeds d{cell.data_seed}/m{cell.model_seed} | "
            f"T_train {steps(t_train)}, T_val {steps(t_val)}{delay}: "
            f"{classify(pd.Series([t_val - t_train if delay else None], dtype='Int64'), gap).iloc[0]}")


def panel_title(name: str, stats: dict[str, float]) -> str:
    holes = f", {stats['nonfinite']} NaN/inf (white)" if stats["nonfinite"] else ""
    return f"{name}\nrange {stats['range']:.3g}, roughness {stats['roughness']:.3g}{holes}"


def draw_row(fig: "plt.Figure", landscape: dict[str, Any], title: str) -> None:
    """Train and validation loss contours of one run, each on its own log colour scale (a memorizing
    run's validation loss sits far above its train loss: one shared scale would paint it flat),
    centre marked."""
    import matplotlib.ticker
    import numpy as np
    from matplotlib.colors import LogNorm

    alphas, betas = np.asarray(landscape["alphas"]), np.asarray(landscape["betas"])
    axes = fig.subplots(1, len(PANELS), sharey=True)
    for ax, (key, name) in zip(axes, PANELS):
        grid = np.asarray(landscape[key], dtype=float)
        finite = grid[np.isfinite(grid)]
        low = max(float(finite.min()), 1e-8) if finite.size else 1e-8  # log scale: a loss of 0 sits at the floor
        high = max(float(finite.max()), low * 1.01) if finite.size else 1.0
        levels = np.geomspace(low, high, LEVELS)
        norm = LogNorm(low, high)
        # grid[i, j] is at (alpha_i, beta_j): contourf wants [y, x], so the transpose
        filled = ax.contourf(alphas, betas, np.clip(grid, low, high).T, levels=levels, norm=norm, cmap="viridis")
        ax.contour(alphas, betas, np.clip(grid, low, high).T, levels=levels, colors="white", linewidths=0.3)
        ax.plot([0], [0], marker="+", color="red", markersize=9)
        ax.set_title(panel_title(name, landscape["stats"][key]), fontsize=9)
        ax.set_xlabel("alpha (direction 1)")
        ax.set_aspect("equal")
        bar = fig.colorbar(filled, ax=ax, shrink=0.8, label="loss (log scale)")
        bar.set_ticks(levels[::3], labels=[f"{v:.3g}" for v in levels[::3]])
        bar.ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0].set_ylabel("beta (direction 2)")
    fig.suptitle(title, fontsize=9)


def landscape_figure(runs: list[tuple[str, dict[str, Any]]], pdf: str, png: str, title: str = "") -> None:
    """One row per (row title, landscape)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grokking.plots import save_figure

    if not runs:
        raise ValueError("no run has a landscape: the landscape files are empty")
    fig = plt.figure(figsize=(9.0, 3.6 * len(runs) + (0.4 if title else 0)), layout="constrained")
    rows = fig.subfigures(len(runs), 1, squeeze=False)[:, 0]
    for subfig, (row_title, landscape) in zip(rows, runs):
        draw_row(subfig, landscape, row_title)
    if title:
        fig.suptitle(title)
    save_figure(fig, pdf, png)


def study_runs(landscapes: dict[str, dict], cells: "pd.DataFrame", label: str, gap: int) -> list[tuple[str, dict]]:
    """(row title, landscape) of every cell of the table that has a landscape, in table order."""
    return [(run_title(label, cell, gap), landscapes[cell.cell_id])
            for cell in cells.itertuples() if cell.cell_id in landscapes]


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.curve_plots import read_cells
    from grokking.io import load_torch

    runs = []
    for i, (label, gap) in enumerate(zip(options["labels"], options["gaps"])):
        runs += study_runs(load_torch(files[f"landscape_{i}"][0]), read_cells(files[f"cells_{i}"][0]), label, gap)
    landscape_figure(runs, pdf, png, title="\n".join(filter(None, [options["title"], settings_text(runs)])))


def settings_text(runs: list[tuple[str, dict]]) -> str:
    """What the landscapes were computed with (every file of a figure shares it)."""
    if not runs or "settings" not in runs[0][1]:
        return ""
    s = runs[0][1]["settings"]
    directions = {"filter": "filter-normalized (Li et al. 2018)", "tensor": "one unit-norm Gaussian per tensor (003's code)"}
    return (f"{s['points']} x {s['points']} points over [-{s['span']:g}, {s['span']:g}]^2 along two random directions, "
            f"{directions.get(s['normalization'], s['normalization'])}, seed {s['seed']}; loss on {s['rows']:,} equations of each split")


KIND = FigureKind("landscape", inputs, options, draw, caption="landscape.rst", category="Loss landscapes",
                  keys=("labels", "grokking_delay", "normalization"))
