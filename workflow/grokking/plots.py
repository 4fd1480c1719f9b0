"""Phase-diagram figures: decoder learning rate (rows, log-spaced) against weight decay (columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from grokking.io import atomic_path  # noqa: E402
from grokking.phases import DIVERGED, PHASE_COLORS, PHASES  # noqa: E402

ORDER = (*PHASES, DIVERGED)


def _tick_positions(n: int, max_ticks: int = 6) -> np.ndarray:
    """Every k-th cell from the first, evenly spaced so that neighbouring labels never collide."""
    step = max(1, -(-(n - 1) // (max_ticks - 1)))
    return np.arange(0, n, step)


def _format(value: float) -> str:
    return f"{value:.2g}" if value != 0 else "0"


def _label_axes(ax: plt.Axes, lrs, wds, title: str) -> None:
    """Tick labels are the grid's actual lr and wd values (thinned), as in the report's figures."""
    xt, yt = _tick_positions(len(wds)), _tick_positions(len(lrs))
    ax.set_xticks(xt, [_format(wds[i]) for i in xt])
    ax.set_yticks(yt, [_format(lrs[i]) for i in yt])
    ax.set_xlabel("weight decay (decoder)")
    ax.set_ylabel("learning rate (decoder)")
    ax.set_title(title)


def grid_description(phases: pd.DataFrame) -> str:
    """'7x7 grid, 10,000 steps': what a diagram was computed on (figures state it themselves)."""
    return (f"{phases['lr'].nunique()}x{phases['wd'].nunique()} grid, "
            f"{int(phases['budget'].max()):,} steps")


def phase_panel(ax: plt.Axes, phases: pd.DataFrame, title: str) -> set[str]:
    """Draw one discrete phase diagram; return the phases present."""
    grid = phases.pivot_table(index="lr", columns="wd", values="phase", aggfunc="first")
    codes = grid.apply(lambda col: col.map({p: i for i, p in enumerate(ORDER)})).to_numpy(float)
    cmap = ListedColormap([PHASE_COLORS[p] for p in ORDER])
    ax.imshow(codes, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(ORDER) - 0.5, aspect="auto",
              interpolation="nearest")
    lrs, wds = grid.index.to_numpy(), grid.columns.to_numpy()
    _label_axes(ax, lrs, wds, title)
    return set(phases["phase"])


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
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.9), squeeze=False)
    present: set[str] = set()
    for ax, table, title in zip(axes[0], tables, titles):
        present |= phase_panel(ax, table, f"{title}\n{grid_description(table)}")
    handles = [Patch(facecolor=PHASE_COLORS[p], edgecolor="gray", label=p) for p in ORDER
               if p in PHASES or p in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, pdf, png)


def smooth_panel(ax: plt.Axes, gap_bar: plt.Axes, train_bar: plt.Axes, phases: pd.DataFrame, gap: int,
                 title: str) -> None:
    """The report's smooth diagram: generalizing cells colored by T_val - T_train (log scale),
    memorizing cells by T_train, confusion (and divergence) black: never even memorized."""
    lrs = np.sort(phases["lr"].unique())
    wds = np.sort(phases["wd"].unique())
    row = {v: i for i, v in enumerate(lrs)}
    col = {v: i for i, v in enumerate(wds)}
    generalizing, memorizing, never = (np.full((len(lrs), len(wds)), np.nan) for _ in range(3))
    for r in phases.itertuples():
        i, j = row[r.lr], col[r.wd]
        if r.phase in ("comprehension", "grokking"):
            generalizing[i, j] = max(float(r.t_val - r.t_train), 1.0)  # validation first: fastest
        elif r.phase == "memorization":
            memorizing[i, j] = float(r.t_train)
        else:
            never[i, j] = 1.0
    common = dict(origin="lower", aspect="auto", interpolation="nearest")
    budget = int(phases["budget"].max())
    ax.imshow(never, cmap=ListedColormap(["black"]), **common)
    gen = ax.imshow(generalizing, cmap="summer", norm=LogNorm(1, budget), **common)
    # light = memorized fast, dark = slowly, black = never (confusion): T_train grows towards black
    mem = ax.imshow(memorizing, cmap="Purples", norm=LogNorm(1, budget), **common)
    bar = plt.colorbar(gen, cax=gap_bar)
    bar.set_label("generalizing: T_val - T_train (red: grokking gap)")
    gap_bar.axhline(gap, color="red", lw=2)
    plt.colorbar(mem, cax=train_bar).set_label("memorizing: T_train (black: confusion)")
    _label_axes(ax, lrs, wds, title)


def _grid_position(values: np.ndarray, value: float) -> float:
    """Fractional cell index of ``value`` on a sorted, log-spaced axis (clipped to the axis)."""
    logs = np.log10(np.maximum(values, np.finfo(float).tiny))
    return float(np.interp(np.log10(max(value, np.finfo(float).tiny)), logs, np.arange(len(values))))


def outline_range(ax: plt.Axes, phases: pd.DataFrame, lr: Sequence[float], wd: Sequence[float]) -> None:
    """Red rectangle around the cells whose lr and wd lie in the given [min, max] ranges (Fig. 5).

    Edges sit half a cell outside the first and last cell centres inside the range, interpolated on
    the log axis where a range ends between grid values.
    """
    lrs, wds = np.sort(phases["lr"].unique()), np.sort(phases["wd"].unique())
    (y0, y1), (x0, x1) = ([_grid_position(v, r) for r in rng] for v, rng in ((lrs, lr), (wds, wd)))
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
        1, 4, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1, 1, 0.05, 0.05], "wspace": 0.45}
    )
    present = phase_panel(axes[0], discrete, f"discrete, {grid_description(discrete)}")
    n_changed = len(changes)
    smooth_panel(axes[1], axes[2], axes[3], extended, gap,
                 f"smooth, {int(extended['budget'].max()):,} steps\n"
                 f"({n_changed} cell{'s' if n_changed != 1 else ''} changed phase)")
    axes[1].set_ylabel("")  # shares the left panel's rows
    if outline is not None:
        outline_range(axes[0], discrete, outline["lr"], outline["wd"])
        outline_range(axes[1], extended, outline["lr"], outline["wd"])
    handles = [Patch(facecolor=PHASE_COLORS[p], edgecolor="gray", label=p) for p in ORDER
               if p in PHASES or p in present]
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.05, -0.08))
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

    lrs, wds = np.sort(t_map["lr"].unique()), np.sort(t_map["wd"].unique())
    grid = t_map.pivot_table(index="lr", columns="wd", values="t_train", aggfunc="first")
    values = grid.reindex(index=lrs, columns=wds).to_numpy(float)  # NaN: never reached
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("black")
    budget = int(t_map["budget"].max())
    image = axes[1].imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", interpolation="nearest",
                           cmap=cmap, norm=LogNorm(max(1.0, np.nanmin(values) if np.isfinite(values).any() else 1.0),
                                                   budget))
    _label_axes(axes[1], lrs, wds, f"T_train, {budget:,} steps (black: never)")
    plt.colorbar(image, cax=axes[2]).set_label("T_train (steps)")
    if title:
        fig.suptitle(title, y=1.02)
    save_figure(fig, pdf, png)
