"""Phase-diagram figures in the report's orientation: decoder learning rate along x (log-spaced
values, left to right), weight decay along y from the top (0, or the smallest value, at the top).

Every diagram is an image of the lr x wd grid; ``DiagramGrid`` is the one place that maps a cell's
(lr, wd) to its pixel, so all figure kinds share the orientation. Cells whose loss became NaN/Inf
carry a white dot on top of their phase color (``mark_diverged``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.table  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from grokking.io import atomic_path  # noqa: E402
from grokking.phases import PHASE_COLORS, PHASES  # noqa: E402

IMAGE = dict(origin="upper", aspect="auto", interpolation="nearest")  # row 0 (smallest wd) on top
DIVERGED_MARK = dict(marker="o", s=14, facecolor="white", edgecolor="black", linewidths=0.6, zorder=4)


@dataclass(frozen=True)
class DiagramGrid:
    """The lr x wd grid of a table: lr along x (columns), wd along y (rows, smallest on top)."""

    lrs: np.ndarray
    wds: np.ndarray

    @classmethod
    def of(cls, table: pd.DataFrame) -> "DiagramGrid":
        return cls(np.sort(table["lr"].unique()), np.sort(table["wd"].unique()))

    def position(self, lr: float, wd: float) -> tuple[int, int]:
        """(x, y) pixel of a cell: column of its lr, row of its wd."""
        return int(np.searchsorted(self.lrs, lr)), int(np.searchsorted(self.wds, wd))

    def image(self, table: pd.DataFrame, value: Callable[[tuple], float]) -> np.ndarray:
        """[wd, lr] array of ``value(row)`` for every row of ``table`` (NaN where no cell)."""
        out = np.full((len(self.wds), len(self.lrs)), np.nan)
        for row in table.itertuples():
            x, y = self.position(row.lr, row.wd)
            out[y, x] = value(row)
        return out


def _tick_positions(n: int, max_ticks: int = 6) -> np.ndarray:
    """Every k-th cell from the first, evenly spaced so that neighbouring labels never collide."""
    step = max(1, -(-(n - 1) // (max_ticks - 1)))
    return np.arange(0, n, step)


def _format(value: float) -> str:
    return f"{value:.2g}" if value != 0 else "0"


def _label_axes(ax: plt.Axes, grid: DiagramGrid, title: str) -> None:
    """Tick labels are the grid's actual lr and wd values (thinned), as in the report's figures."""
    xt, yt = _tick_positions(len(grid.lrs)), _tick_positions(len(grid.wds))
    ax.set_xticks(xt, [_format(grid.lrs[i]) for i in xt])
    ax.set_yticks(yt, [_format(grid.wds[i]) for i in yt])
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    ax.set_xlabel("learning rate (decoder)")
    ax.set_ylabel("weight decay")
    ax.set_title(title)


def grid_description(phases: pd.DataFrame) -> str:
    """'7x7 grid, 10,000 steps': what a diagram was computed on (figures state it themselves)."""
    return (f"{phases['lr'].nunique()}x{phases['wd'].nunique()} grid, "
            f"{int(phases['budget'].max()):,} steps")


def mark_diverged(ax: plt.Axes, phases: pd.DataFrame, grid: DiagramGrid) -> int:
    """A white dot on every cell whose loss became NaN/Inf; returns how many there are."""
    diverged = phases[phases["diverged"].astype(bool)]
    if len(diverged):
        xy = np.array([grid.position(lr, wd) for lr, wd in zip(diverged["lr"], diverged["wd"])])
        ax.scatter(xy[:, 0], xy[:, 1], **DIVERGED_MARK)
    return len(diverged)


def phase_legend_handles(diverged: int = 0, what: str = "cells") -> list:
    """The four phases, and the divergence mark with its count when a panel shows one."""
    handles: list = [Patch(facecolor=PHASE_COLORS[p], edgecolor="gray", label=p) for p in PHASES]
    if diverged:
        noun = what if diverged > 1 else what.replace("cells", "cell", 1)
        handles.append(Line2D([], [], ls="", marker=DIVERGED_MARK["marker"], markersize=5,
                              markerfacecolor="white", markeredgecolor="black",
                              label=f"diverged: NaN/Inf loss ({diverged} {noun})"))
    return handles


def legend_below(fig: plt.Figure, axes: Sequence[plt.Axes], handles: list, ncol: int | None = None,
                 x: float = 0.5, **kwargs) -> None:
    """A figure legend just under the lowest of ``axes``, rotated tick labels and axis label included
    (fixed offsets overlap them as soon as the tick labels grow)."""
    fig.canvas.draw()
    bottom = min(ax.get_tightbbox().y0 for ax in axes) / fig.bbox.height
    fig.legend(handles=handles, loc="upper center", ncol=ncol or len(handles), frameon=False,
               bbox_to_anchor=(x, bottom), **kwargs)


def phase_panel(ax: plt.Axes, phases: pd.DataFrame, title: str) -> int:
    """Draw one discrete phase diagram; return the number of diverged cells marked on it."""
    grid = DiagramGrid.of(phases)
    codes = grid.image(phases, lambda r: PHASES.index(r.phase))
    cmap = ListedColormap([PHASE_COLORS[p] for p in PHASES])
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(PHASES) - 0.5, **IMAGE)
    _label_axes(ax, grid, title)
    return mark_diverged(ax, phases, grid)


def table_figure(rows: Sequence[Sequence[str]], header: Sequence[str], width: float,
                 height: float) -> tuple[plt.Figure, plt.Axes, matplotlib.table.Table]:
    """A figure that is one table (the report shows tables as images): 8-point text, columns as wide
    as their text, rows 1.4 lines high."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.axis("off")
    drawn = ax.table(cellText=rows, colLabels=list(header), loc="upper center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(len(header))))
    drawn.scale(1, 1.4)
    return fig, ax, drawn


def save_figure(fig: plt.Figure, pdf: str | Path, png: str | Path) -> None:
    """Write PDF and PNG atomically."""
    for path, kwargs in ((pdf, {}), (png, {"dpi": 200})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], bbox_inches="tight", **kwargs)
    plt.close(fig)


def phase_diagrams(
    tables: Sequence[pd.DataFrame], titles: Sequence[str], pdf: str | Path, png: str | Path,
    suptitle: str = "",
) -> None:
    """Discrete phase diagrams side by side with one shared legend."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.1), squeeze=False)
    diverged = 0
    for ax, table, title in zip(axes[0], tables, titles):
        diverged += phase_panel(ax, table, f"{title}\n{grid_description(table)}")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    legend_below(fig, axes[0], phase_legend_handles(diverged))
    save_figure(fig, pdf, png)


def smooth_panel(ax: plt.Axes, gap_bar: plt.Axes, train_bar: plt.Axes, phases: pd.DataFrame, gap: int,
                 title: str) -> int:
    """The report's smooth diagram: generalizing cells colored by T_val - T_train (log scale),
    memorizing cells by T_train, confusion black: never even memorized. Returns the diverged cells
    marked on it."""
    grid = DiagramGrid.of(phases)

    def only(phase_names: tuple[str, ...], value: Callable[[tuple], float]) -> Callable[[tuple], float]:
        return lambda r: value(r) if r.phase in phase_names else np.nan

    # validation first (a negative gap) is the fastest generalization: drawn at 1 step
    generalizing = grid.image(phases, only(("comprehension", "grokking"),
                                           lambda r: max(float(r.t_val - r.t_train), 1.0)))
    memorizing = grid.image(phases, only(("memorization",), lambda r: float(r.t_train)))
    never = grid.image(phases, only(("confusion",), lambda r: 1.0))
    budget = int(phases["budget"].max())
    ax.imshow(never, cmap=ListedColormap(["black"]), **IMAGE)
    gen = ax.imshow(generalizing, cmap="summer", norm=LogNorm(1, budget), **IMAGE)
    # light = memorized fast, dark = slowly, black = never (confusion): T_train grows towards black
    mem = ax.imshow(memorizing, cmap="Purples", norm=LogNorm(1, budget), **IMAGE)
    bar = plt.colorbar(gen, cax=gap_bar)
    bar.set_label("generalizing: T_val - T_train (red: grokking gap)")
    gap_bar.axhline(gap, color="red", lw=2)
    plt.colorbar(mem, cax=train_bar).set_label("memorizing: T_train (black: confusion)")
    _label_axes(ax, grid, title)
    return mark_diverged(ax, phases, grid)


def _grid_position(values: np.ndarray, value: float) -> float:
    """Fractional cell index of ``value`` on a sorted, log-spaced axis (clipped to the axis)."""
    logs = np.log10(np.maximum(values, np.finfo(float).tiny))
    return float(np.interp(np.log10(max(value, np.finfo(float).tiny)), logs, np.arange(len(values))))


def outline_range(ax: plt.Axes, phases: pd.DataFrame, lr: Sequence[float], wd: Sequence[float]) -> None:
    """Red rectangle around the cells whose lr and wd lie in the given [min, max] ranges (Fig. 5).

    Edges sit half a cell outside the first and last cell centres inside the range, interpolated on
    the log axis where a range ends between grid values.
    """
    grid = DiagramGrid.of(phases)
    (x0, x1), (y0, y1) = ([_grid_position(v, r) for r in rng] for v, rng in ((grid.lrs, lr), (grid.wds, wd)))
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor="red",
                           linewidth=2, zorder=5, clip_on=False))


def smooth_figure(
    discrete: pd.DataFrame, extended: pd.DataFrame, changes: pd.DataFrame, gap: int,
    pdf: str | Path, png: str | Path, title: str = "", outline: dict[str, Sequence[float]] | None = None,
) -> None:
    """Discrete diagram at the base budget (left) beside the smooth one at the extended budget.

    ``outline`` ({"lr": [min, max], "wd": [min, max]}) draws a red rectangle on both panels.
    """
    fig, axes = plt.subplots(
        1, 4, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1, 0.05, 0.05], "wspace": 0.45}
    )
    diverged = phase_panel(axes[0], discrete, f"discrete, {grid_description(discrete)}")
    n_changed = len(changes)
    diverged_smooth = smooth_panel(axes[1], axes[2], axes[3], extended, gap,
                                   f"smooth, {int(extended['budget'].max()):,} steps\n"
                                   f"({n_changed} cell{'s' if n_changed != 1 else ''} changed phase)")
    axes[1].set_ylabel("")  # shares the left panel's rows
    if outline is not None:
        outline_range(axes[0], discrete, outline["lr"], outline["wd"])
        outline_range(axes[1], extended, outline["lr"], outline["wd"])
    legend_below(fig, axes[:2], phase_legend_handles(max(diverged, diverged_smooth)), x=0.4)
    if title:
        fig.suptitle(title, y=1.06)
    save_figure(fig, pdf, png)


def dynamics_figure(
    histories: dict[str, dict], cells: pd.DataFrame, t_map: pd.DataFrame, threshold: float,
    pdf: str | Path, png: str | Path, title: str = "",
) -> None:
    """Train and validation accuracy against steps (left) beside the map of T_train (right; Fig. 6).

    Left: every cell of ``cells`` with a history, train solid and validation dashed, log steps. Right:
    T_train of every cell of ``t_map`` on a log color scale; black where train never passed.
    """
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.05], "wspace": 0.5})
    ax = axes[0]
    for i, row in enumerate(cells.itertuples()):
        if row.cell_id not in histories:
            continue
        h = histories[row.cell_id]
        steps = np.asarray(h["step"])
        color = f"C{i % 10}"
        label = f"lr {row.lr:.3g}, wd {row.wd:.3g}"
        ax.plot(steps, np.asarray(h["train_acc"]), color=color, label=f"train ({label})")
        ax.plot(steps, np.asarray(h["val_acc"]), color=color, ls="--", label=f"validation ({label})")
    ax.axhline(threshold, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: no overlapping labels
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("optimization steps")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy (dotted: threshold)")
    ax.legend(fontsize=7, loc="lower right")

    grid = DiagramGrid.of(t_map)
    values = grid.image(t_map, lambda r: float(r.t_train))  # NaN: never reached
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("black")
    budget = int(t_map["budget"].max())
    lowest = np.nanmin(values) if np.isfinite(values).any() else 1.0
    image = axes[1].imshow(np.ma.masked_invalid(values), cmap=cmap, norm=LogNorm(max(1.0, lowest), budget),
                           **IMAGE)
    _label_axes(axes[1], grid, f"T_train, {budget:,} steps (black: never)")
    if mark_diverged(axes[1], t_map, grid):
        axes[1].set_title(f"{axes[1].get_title()}\nwhite dots: diverged", fontsize="medium")
    plt.colorbar(image, cax=axes[2]).set_label("T_train (steps)")
    if title:
        fig.suptitle(title, y=1.02)
    save_figure(fig, pdf, png)
