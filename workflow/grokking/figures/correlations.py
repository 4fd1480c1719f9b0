"""Hyperparameters against the grokking delay (paper 003, Table 1 and Fig. 3): the correlation table
with bootstrap intervals beside the report's values, and a parallel-coordinates plot of every run.

Same inputs as ``batch_grid``. Matplotlib is imported by ``draw`` only: config validation reads this
module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from grokking.delays import HYPERPARAMETERS, correlations
from grokking.figures import FigureKind, Studies
from grokking.figures.batch_grid import inputs, read_runs, setting_text, study_options

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

NAMES = {"batch_size": "batch size", "noise": "noise level", "init_scale": "init scale", "lr": "learning rate",
         "wd": "weight decay", "t_train_epochs": "T_train\n(epochs)", "t_val_epochs": "T_val\n(epochs)"}
AXES = ("t_train_epochs", "t_val_epochs", *HYPERPARAMETERS)  # Fig. 3's columns, left to right
NOT_REACHED = 1.12  # height of the "not reached" mark above an axis, in axis units (axes span 0..1)
UNREACHED_COLOR = "0.82"
N_BOOT = 2000  # bootstrap resamples of the intervals: about 8 s for 3,600 runs on a busy core


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    """As ``batch_grid``'s: the delay boundary only counts the grokking runs the plot states."""
    return {"title": spec.get("title", ""), "grokking_delay": spec.get("grokking_delay"),
            "studies": study_options(spec, studies)}


def _format(value: float) -> str:
    """'0', '0.0001', '0.5', '1,024', '1e+06'."""
    if value == 0 or not 1e-4 <= abs(value) < 1e6:
        return f"{value:.3g}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


@dataclass(frozen=True)
class Axis:
    """One vertical axis of the parallel coordinates: values to heights in [0, 1] (NaN: above the
    axis, "not reached"). Log where the positive values span a decade or more (batch 8 to 1024, lr, T
    in epochs); a 0 among them (noise) sits one decade below the smallest positive value, labelled 0."""

    log: bool
    zero: float  # log10 height given to 0 on a log axis
    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray) -> "Axis":
        finite = values[np.isfinite(values)]
        positive = finite[finite > 0]
        log = bool(len(positive) and (finite >= 0).all() and positive.max() >= 10 * positive.min())
        zero = float(np.log10(positive.min()) - 1) if log else 0.0
        t = cls._transform(finite, log, zero)
        return cls(log, zero, float(t.min()) if len(t) else 0.0, float(t.max()) if len(t) else 1.0)

    @staticmethod
    def _transform(values: np.ndarray, log: bool, zero: float) -> np.ndarray:
        if not log:
            return values
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, np.log10(np.where(values > 0, values, 1)), zero)

    def height(self, values: np.ndarray) -> np.ndarray:
        t = self._transform(values, self.log, self.zero)
        span = self.high - self.low
        heights = (t - self.low) / span if span > 0 else np.full(len(t), 0.5)
        return np.where(np.isfinite(values), heights, NOT_REACHED)

    def ticks(self, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Every value tried when there are few (hyperparameters), else decades or five even steps."""
        distinct = np.unique(values[np.isfinite(values)])
        if len(distinct) > 8:
            if self.log:
                distinct = 10.0 ** np.arange(np.ceil(self.low), np.floor(self.high) + 1)
            else:
                distinct = np.linspace(self.low, self.high, 5)
        return self.height(distinct), [_format(v) for v in distinct]


def parallel_panel(ax: plt.Axes, runs: pd.DataFrame) -> None:
    """Every run as one line across ``AXES``, coloured by its delay in epochs; runs without a delay
    (a threshold never reached) in light gray beneath."""
    import matplotlib
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm, Normalize

    columns = [runs[name].to_numpy(dtype=float) for name in AXES]
    heights = np.stack([Axis.of(v).height(v) for v in columns], axis=1)  # [runs, axes]
    xs = np.arange(len(AXES))
    delay = runs["delay_epochs"].to_numpy(dtype=float)
    has = np.isfinite(delay)
    ax.add_collection(LineCollection([np.column_stack([xs, h]) for h in heights[~has]], colors=UNREACHED_COLOR,
                                     linewidths=0.5, alpha=0.6, zorder=1))
    positive = delay[has & (delay > 0)]
    if len(positive) and positive.max() >= 10 * positive.min():
        norm = LogNorm(positive.min(), positive.max())  # delays <= 0 take the lowest colour
        shown = np.clip(delay, positive.min(), None)
    else:
        norm, shown = Normalize(*(np.nanmin(delay), np.nanmax(delay)) if has.any() else (0, 1)), delay
    order = np.argsort(delay[has])  # largest delays drawn last, on top
    cmap = matplotlib.colormaps["plasma"]
    lines = LineCollection([np.column_stack([xs, h]) for h in heights[has][order]], cmap=cmap, norm=norm,
                           linewidths=0.7, alpha=0.7, zorder=2)
    lines.set_array(shown[has][order])
    ax.add_collection(lines)
    ax.figure.colorbar(lines, ax=ax, fraction=0.04, pad=0.02, label="grokking delay (epochs)")
    for x, (name, values) in enumerate(zip(AXES, columns)):
        axis = Axis.of(values)
        ax.axvline(x, color="black", lw=0.8, zorder=0)
        for y, label in zip(*axis.ticks(values)):
            ax.plot([x - 0.04, x], [y, y], color="black", lw=0.8)
            ax.text(x - 0.06, y, label, ha="right", va="center", fontsize=7)
        if not np.isfinite(values).all():
            ax.text(x - 0.06, NOT_REACHED, "not\nreached", ha="right", va="center", fontsize=7, color="0.4")
        scale = "log" if axis.log else "linear"
        ax.text(x, -0.1, f"{NAMES[name]}\n({scale})", ha="center", va="top", fontsize=8)
    ax.set_xlim(-0.6, len(AXES) - 0.7)
    ax.set_ylim(-0.03, NOT_REACHED + 0.06)
    ax.axis("off")
    grokking = runs["class"].eq("grokking").sum()
    ax.set_title(f"{int(has.sum()):,} runs coloured by delay ({grokking:,} grokking: delay > "
                 f"{', '.join(f'{g:,}' for g in sorted(runs['grokking_delay'].unique()))} steps), "
                 f"{int((~has).sum()):,} without a delay in gray", fontsize=9)


def _with_interval(value: float, low: float, high: float) -> str:
    return "—" if value != value else f"{value:.3f} [{low:.2f}, {high:.2f}]"


def table_panel(ax: plt.Axes, table: pd.DataFrame, total: int) -> None:
    """Table 1 with our numbers: values tried, Pearson and Spearman with 95 % intervals, the report's."""
    rows = [[NAMES[r.hyperparameter], ", ".join(_format(v) for v in r.values),
             _with_interval(r.pearson, r.pearson_low, r.pearson_high),
             _with_interval(r.spearman, r.spearman_low, r.spearman_high),
             "—" if r.report != r.report else f"{r.report:g}", f"{r.n:,}"] for r in table.itertuples()]
    ax.axis("off")
    drawn = ax.table(cellText=rows, colLabels=["hyperparameter", "values tried", "Pearson [95 % CI]",
                                               "Spearman [95 % CI]", "report", "n"],
                     loc="center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(6)))
    drawn.scale(1, 1.8)
    n = int(table["n"].max()) if len(table) else 0
    ax.set_title("Correlation with the grokking delay (epochs)", fontsize=9)
    ax.text(0.5, 0.18, f"Over the {n:,} of {total:,} runs that reached both thresholds (the others have no\n"
            "delay). Pearson on raw values, as the report's wandb panel; Spearman on ranks.\n"
            f"95 % CI: percentile bootstrap over runs, {N_BOOT:,} resamples. —: the hyperparameter or\n"
            "the delay does not vary, or fewer than 3 runs have a delay.", transform=ax.transAxes,
            ha="center", va="top", fontsize=8)


def correlations_figure(runs: pd.DataFrame, options: dict[str, Any], pdf: str, png: str) -> None:
    import matplotlib.pyplot as plt

    from grokking.plots import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(19, 6.5), gridspec_kw={"width_ratios": [1, 1.35]})
    table_panel(left, correlations(runs, n_boot=N_BOOT), len(runs))
    parallel_panel(right, runs)
    fig.suptitle(f"{options.get('title') or 'Hyperparameters and the grokking delay'}\n"
                 f"{setting_text(runs, options)}, {len(runs):,} runs", fontsize=10)
    save_figure(fig, pdf, png)


def draw(files: dict[str, list[str]], options: dict[str, Any], pdf: str, png: str) -> None:
    correlations_figure(read_runs(files, options), options, pdf, png)


KIND = FigureKind("correlations", inputs, options, draw, caption="correlations.rst", category="Grokking delay",
                  keys=("grokking_delay",))
