"""Grokking delay over training-set size x batch size (paper 003, Table 2 and Fig. 4): mean T_train,
T_val and delay in steps and in epochs, the shares of confusion, comprehension and grokking, and the
ratio train size / batch with the band where comprehension lies.

The studies of a figure are the members of a sweep (one per p and batch); every run of every member
is one sample. Matplotlib is imported by ``draw`` only: config validation reads this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd

from grokking.delays import CLASSES, comprehension_band, grid_summary, runs_table
from grokking.figures import FigureKind, Histories, Inputs, Studies

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

# The study settings that define a run's training set, batch and thresholds (arity where a task has it).
STUDY_KEYS = ("p", "operation", "arity", "train_fraction", "batch_size", "budget", "threshold", "grokking_gap")
OPERATION_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# (summary column, panel title) of the two rows of times; row 2 is the same in epochs.
TIME_PANELS = (("t_train", "train > threshold: mean T_train"), ("t_val", "validation > threshold: mean T_val"),
               ("delay", "grokking delay: mean T_val - T_train"))
SHARE_COLORMAPS = {"confusion": "Greys", "comprehension": "YlGn", "grokking": "YlOrBr"}


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """``cells_<i>``: the runs of the i-th study."""
    return {f"cells_{i}": [f"results/{study}/cells.csv"] for i, study in enumerate(spec["studies"])}


def study_options(spec: dict, studies: Studies) -> list[dict[str, Any]]:
    """Each study's name and the settings that give its n_train, steps per epoch and thresholds."""
    return [{"name": s, **{k: studies[s][k] for k in STUDY_KEYS if k in studies[s]}} for s in spec["studies"]]


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    """``grokking_delay``: the entry's, else (None) each study's ``grokking_gap``, else 1000 steps."""
    return {"title": spec.get("title", ""), "grokking_delay": spec.get("grokking_delay"),
            "studies": study_options(spec, studies)}


def read_runs(files: Inputs, options: dict[str, Any]) -> pd.DataFrame:
    """Every run of the figure's studies (``delays.runs_table``)."""
    from grokking.curve_plots import read_cells

    studies = options["studies"]
    cells = {s["name"]: read_cells(files[f"cells_{i}"][0]) for i, s in enumerate(studies)}
    return runs_table(cells, {s["name"]: s for s in studies}, options.get("grokking_delay"))


def _listed(values: Iterable, fmt: str = "{:g}") -> str:
    """'0.3' or '0.3, 0.5': the distinct values of a setting across the studies."""
    return ", ".join(fmt.format(v) for v in sorted(set(values)))


def setting_text(runs: pd.DataFrame, options: dict[str, Any]) -> str:
    """What the runs trained and how they were judged, as every figure of the project states it."""
    studies = options["studies"]
    tasks = _listed((f"x {OPERATION_SYMBOLS.get(op, op)} y mod p" for op in runs["operation"]), "{}")
    return (f"{tasks} (p {_listed(runs['p'])}), train fraction {_listed(s['train_fraction'] for s in studies)}, "
            f"threshold {_listed(s['threshold'] for s in studies)}, "
            f"budget {_listed(runs['budget'], '{:,}')} steps")


def _short(value: float) -> str:
    """Table 2's style: '67.0', '1.4k', '10.8k'; '—' where no run reached it."""
    if value != value:  # NaN
        return "—"
    return f"{value / 1000:.1f}k" if abs(value) >= 1000 else f"{value:.3g}"


def _norm(values: np.ndarray, log: bool):
    """Log colours where the values are positive and span a decade, else linear."""
    from matplotlib.colors import LogNorm, Normalize

    finite = values[np.isfinite(values)]
    if log and len(finite) and finite.min() > 0 and finite.max() >= 10 * finite.min():
        return LogNorm(finite.min(), finite.max())
    return Normalize(*(finite.min(), finite.max()) if len(finite) else (0, 1))


def heat_panel(ax: plt.Axes, summary: pd.DataFrame, column: str, title: str, cmap: str = "viridis",
               log: bool = True, text: Callable[[float], str] = _short, share: bool = False,
               rows_named: bool = True) -> None:
    """One heat map: training-set sizes down (largest on top, as Table 2), batches across, each cell
    annotated; cells where no run reached the quantity are left blank (gray). Shares share the scale
    0 to 1; only the first panel of a row names the rows (every panel has the same grid)."""
    import matplotlib
    from matplotlib.colors import Normalize

    grid = summary.pivot(index="n_train", columns="batch_size", values=column).sort_index(ascending=False)
    values = grid.to_numpy(dtype=float)
    norm = Normalize(0, 1) if share else _norm(values, log)
    colors = matplotlib.colormaps[cmap]
    image = ax.imshow(values, cmap=colors, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_facecolor("0.85")
    for (y, x), value in np.ndenumerate(values):
        if value == value:
            red, green, blue, _ = colors(norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(x, y, text(value), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    p_of = summary.groupby("n_train")["p"].min()
    ax.set_yticks(range(len(grid.index)), [f"{n:,} (p {p_of[n]})" if rows_named else "" for n in grid.index],
                  fontsize=7)
    ax.set_xticks(range(len(grid.columns)), [f"{b:,}" for b in grid.columns], fontsize=7)
    ax.set_xlabel("batch size")
    if rows_named:
        ax.set_ylabel("training-set size (p)")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)


def _ratio(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def band_text(band: dict[str, Any]) -> str:
    """The comprehension band in words (``delays.comprehension_band``), beside the report's."""
    if not band["n_runs"]:
        low, high = band["report"]
        return f"No run is comprehension (the report: train size / batch mostly {low:g} to {high:g})."
    cells = (f"Comprehension is the most common class in {band['n_cells']} cell(s), train size / batch "
             f"{_ratio(band['cells'][0])} to {_ratio(band['cells'][1])}" if band["n_cells"]
             else "Comprehension is the most common class in no cell")
    low, high = band["runs"]
    return (f"{cells}; 80 % of the {band['n_runs']} comprehension runs have a ratio in "
            f"[{_ratio(low)}, {_ratio(high)}] (10th-90th percentile), {band['share_in_report_band']:.0%} in "
            f"the report's [{band['report'][0]:g}, {band['report'][1]:g}].")


def batch_grid_figure(runs: pd.DataFrame, options: dict[str, Any], pdf: str, png: str) -> None:
    """Three rows of heat maps: times in steps, times in epochs, class shares and the ratio."""
    import matplotlib.pyplot as plt

    from grokking.plots import save_figure

    summary = grid_summary(runs)
    fig = plt.figure(figsize=(17, 13))
    layout = fig.add_gridspec(3, 12, hspace=0.45, wspace=1.2)
    for row, (unit, name) in enumerate((("", "steps"), ("_epochs", "epochs"))):
        for k, (column, title) in enumerate(TIME_PANELS):
            heat_panel(fig.add_subplot(layout[row, 4 * k:4 * k + 4]), summary, f"{column}{unit}",
                       f"{title} ({name})\nover the runs that reached it", rows_named=k == 0)
    for k, name in enumerate(CLASSES):
        heat_panel(fig.add_subplot(layout[2, 3 * k:3 * k + 3]), summary, name, f"share of {name}",
                   cmap=SHARE_COLORMAPS[name], text=lambda v: f"{v:.0%}", share=True, rows_named=k == 0)
    heat_panel(fig.add_subplot(layout[2, 9:12]), summary, "ratio", "train size / batch size",
               cmap="cividis", rows_named=False)
    runs_per_cell = _listed(summary["runs"], "{:,}") if summary["runs"].nunique() < 4 else (
        f"{summary['runs'].min():,} to {summary['runs'].max():,}")
    delay = _listed(runs["grokking_delay"], "{:,}")
    fig.suptitle(f"{options.get('title') or 'Grokking delay by training-set size and batch size'}\n"
                 f"{setting_text(runs, options)}; {runs['n_train'].nunique()} training-set sizes x "
                 f"{runs['batch_size'].nunique()} batch sizes, {runs_per_cell} runs per cell, {len(runs):,} runs\n"
                 f"grokking: delay > {delay} steps; comprehension: delay <= {delay}; confusion: a "
                 f"threshold not reached. Epoch = ceil(train size / batch) steps.", fontsize=10)
    fig.text(0.5, 0.04, band_text(comprehension_band(summary)), ha="center", fontsize=10)
    save_figure(fig, pdf, png)


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    batch_grid_figure(read_runs(files, options), options, pdf, png)


KIND = FigureKind("batch_grid", inputs, options, draw, caption="batch_grid.rst", category="Grokking delay",
                  keys=("grokking_delay",))
