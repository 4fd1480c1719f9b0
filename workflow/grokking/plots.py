"""Phase-diagram figures: decoder learning rate (rows, log-spaced) against weight decay (columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from grokking.io import atomic_path  # noqa: E402
from grokking.phases import DIVERGED, PHASE_COLORS, PHASES  # noqa: E402

ORDER = (*PHASES, DIVERGED)


def _tick_positions(n: int, max_ticks: int = 6) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))


def _format(value: float) -> str:
    return f"{value:.2g}" if value != 0 else "0"


def phase_panel(ax: plt.Axes, phases: pd.DataFrame, title: str) -> set[str]:
    """Draw one discrete phase diagram; return the phases present."""
    grid = phases.pivot_table(index="lr", columns="wd", values="phase", aggfunc="first")
    codes = grid.apply(lambda col: col.map({p: i for i, p in enumerate(ORDER)})).to_numpy(float)
    cmap = ListedColormap([PHASE_COLORS[p] for p in ORDER])
    ax.imshow(codes, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(ORDER) - 0.5, aspect="auto",
              interpolation="nearest")
    lrs, wds = grid.index.to_numpy(), grid.columns.to_numpy()
    xt, yt = _tick_positions(len(wds)), _tick_positions(len(lrs))
    ax.set_xticks(xt, [_format(wds[i]) for i in xt])
    ax.set_yticks(yt, [_format(lrs[i]) for i in yt])
    ax.set_xlabel("weight decay (decoder)")
    ax.set_ylabel("learning rate (decoder)")
    ax.set_title(title)
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
        present |= phase_panel(ax, table, title)
    handles = [Patch(facecolor=PHASE_COLORS[p], edgecolor="gray", label=p) for p in ORDER
               if p in PHASES or p in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, pdf, png)
