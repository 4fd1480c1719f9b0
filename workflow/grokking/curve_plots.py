"""Training curves of whole studies against steps, and the table of their threshold steps.

A study's cells that share (lr, wd) and differ only in their seeds are one curve: its mean over the
seeds with a min-max band, so a figure shows how much the seeds disagree and not one lucky run. Each
study is one color family, each (lr, wd) point of it one shade. Every figure states the task, the
batch and the budget of each study it draws, read from the study's settings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from grokking.phases import PHASES
from grokking.plots import legend_below, save_figure, table_figure

PROJECTIONS = ("Q", "K", "V", "O")
PROJECTION_STYLES = ("-", "--", "-.", ":")
# What each panel draws: (history key, attention projection or None, line style).
PANEL_LINES: dict[str, list[tuple[str, int | None, str]]] = {
    "accuracy": [("val_acc", None, "-"), ("train_acc", None, "--")],
    "best_accuracy": [("val_acc_best", None, "-"), ("train_acc_best", None, "--"), ("val_acc", None, ":")],
    "loss": [("val_loss", None, "-"), ("train_loss", None, "--")],
    "param_norm": [("param_norm", None, "-")],
    "attn_norm": [("attn_norm", k, style) for k, style in enumerate(PROJECTION_STYLES)],
    "spectral_norm": [("spectral_norm", None, "-")],
}
PANEL_AXES = {  # (y label, title)
    "accuracy": ("accuracy", "accuracy (dotted: threshold)"),
    "best_accuracy": ("best accuracy so far", "running best (dotted: raw validation)"),
    "loss": ("cross-entropy loss", "loss"),
    "param_norm": ("L2 norm of all parameters", "parameter norm"),
    "attn_norm": ("Frobenius norm", "attention projections, last layer"),
    "spectral_norm": ("largest singular value", "spectral norm of the hidden weights"),
}
STUDY_COLORMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
OPERATION_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
T_COLUMNS = {"t_train": "Int64", "t_val": "Int64"}  # empty: the threshold was never reached


def read_cells(path: str | Path) -> pd.DataFrame:
    """A cells or phases table with its threshold steps as nullable integers."""
    return pd.read_csv(path, dtype=T_COLUMNS)


@dataclass(frozen=True)
class Band:
    """One quantity over seeds: mean, min and max at the steps every seed was evaluated at."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_seeds: int


def seed_band(runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Band:
    """Mean and min-max of ``(steps, values)`` runs on the steps they share: a seed that stopped
    early or was evaluated on other steps is compared where it was measured, never interpolated."""
    shared = functools.reduce(np.intersect1d, [np.asarray(steps) for steps, _ in runs])
    if not len(shared):
        raise ValueError(f"the {len(runs)} seeds of a curve share no evaluation step")
    values = np.stack([np.asarray(v)[np.isin(s, shared)] for s, v in runs])
    return Band(shared, values.mean(axis=0), values.min(axis=0), values.max(axis=0), len(runs))


def seeds_text(n_seeds: int) -> str:
    return "1 seed" if n_seeds == 1 else f"mean of {n_seeds} seeds, band min-max"


def mean_reached(steps: pd.Series) -> float | None:
    """Mean threshold step of the seeds that reached it (None: none did)."""
    reached = steps.dropna()
    return float(reached.mean()) if len(reached) else None


def delay_text(t_train: pd.Series, t_val: pd.Series, budget: int, clock: str = "steps") -> str:
    """Grokking delay T_val - T_train, the mean over the seeds that reached both thresholds, in the
    study's clock (optimizer steps, or epochs)."""
    if t_train.isna().all():
        return f"T_train not reached within {budget:,} {clock}"
    both = pd.DataFrame({"train": t_train, "val": t_val}).dropna()
    if both.empty:
        return f"T_val not reached within {budget:,} {clock}"
    text = f"delay {float((both['val'] - both['train']).mean()):,.0f} {clock}"
    return text if len(both) == len(t_train) else f"{text} ({len(both)} of {len(t_train)} seeds)"


def study_settings(label: str, settings: dict[str, Any]) -> str:
    """'label: (a + b) mod 97, train fraction 0.3, full batch, budget 10,000 steps, threshold 0.95':
    what a study trained and how it was judged (keys its task lacks are left out)."""
    parts = []
    if "task" in settings:
        parts.append(settings["task"])
    elif "p" in settings and "operation" in settings:
        parts.append(f"(a {OPERATION_SYMBOLS[settings['operation']]} b) mod {settings['p']}")
    elif "p" in settings:
        parts.append(f"p {settings['p']}")
    if "train_fraction" in settings:
        parts.append(f"train fraction {settings['train_fraction']:g}")
    if "batch_size" in settings:
        parts.append("full batch" if settings["batch_size"] == 0 else f"batch {settings['batch_size']}")
    parts.append(f"budget {settings['budget']:,} {settings.get('clock', 'steps')}, threshold {settings['threshold']:g}")
    return f"{label}: {', '.join(parts)}"


@dataclass(frozen=True)
class Curve:
    """One (lr, wd) point of a study: its seeds' histories and threshold steps."""

    label: str
    color: Any
    histories: list[dict]
    t_train: pd.Series
    t_val: pd.Series
    budget: int
    clock: str = "steps"

    def band(self, key: str, projection: int | None) -> Band:
        runs = [(np.asarray(h["step"]), _values(h, key, projection)) for h in self.histories]
        return seed_band(runs)


BEST = "_best"  # a key ending so is the running maximum of the recorded curve (001 Figs. 6-7's "best accuracy")


def _values(history: dict, key: str, projection: int | None) -> np.ndarray:
    if key.endswith(BEST):
        return np.maximum.accumulate(_values(history, key.removesuffix(BEST), projection))
    if key not in history:
        raise ValueError(f"a history has no {key!r} (it has {', '.join(history)}): its study's task "
                         f"does not record what this panel draws")
    values = np.asarray(history[key], dtype=float)
    return values if projection is None else values[:, -1, projection]


def study_curves(histories: dict[str, dict], cells: pd.DataFrame, label: str, colormap: str,
                 budget: int, clock: str = "steps") -> list[Curve]:
    """One curve per (lr, wd) point of a study, shaded within the study's color family."""
    points = list(cells.groupby(["lr", "wd"], sort=True))
    cmap = matplotlib.colormaps[colormap]
    shades = [cmap(0.75)] if len(points) == 1 else cmap(np.linspace(0.45, 0.95, len(points)))
    curves = []
    for ((lr, wd), seeds), color in zip(points, shades):
        drawn = [histories[c] for c in seeds["cell_id"] if c in histories]
        if not drawn:
            raise ValueError(f"{label}: no history for any cell at lr {lr:g}, wd {wd:g}")
        curves.append(Curve(f"{label}, lr {lr:.3g}, wd {wd:.3g}", color, drawn,
                            seeds["t_train"].reset_index(drop=True), seeds["t_val"].reset_index(drop=True),
                            budget, clock))
    return curves


def _draw_band(ax: plt.Axes, band: Band, color: Any, style: str) -> None:
    """Mean line and min-max band, from the first step > 0 (a log axis cannot show step 0)."""
    drawn = band.steps > 0
    steps = band.steps[drawn]
    ax.plot(steps, band.mean[drawn], color=color, ls=style, lw=1.3)
    if band.n_seeds > 1:
        ax.fill_between(steps, band.low[drawn], band.high[drawn], color=color, alpha=0.18, lw=0)


def _draw_marks(ax: plt.Axes, curve: Curve) -> None:
    """Mean T_train (dashed) and T_val (solid) of the curve's seeds."""
    for steps, style in ((curve.t_train, "--"), (curve.t_val, "-")):
        step = mean_reached(steps)
        if step is not None and step > 0:
            ax.axvline(step, color=curve.color, ls=style, lw=0.9, alpha=0.7)


def _style_panel(ax: plt.Axes, panel: str, thresholds: Sequence[float], clock: str = "steps",
                 loss: str | None = None) -> None:
    ylabel, title = PANEL_AXES[panel]
    if panel == "loss" and loss:
        ylabel = f"{loss} loss"
    if panel in ("accuracy", "best_accuracy"):
        for threshold in sorted(set(thresholds)):
            ax.axhline(threshold, color="gray", lw=0.8, ls=":")
        ax.set_ylim(0, 1.02)
    if panel == "loss":
        ax.set_yscale("log")
        # plain numbers (3.8, not 3.8 x 10^0); minor ticks labelled only when few decades are shown
        ax.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only
    ax.set_xlabel("optimization steps" if clock == "steps" else clock)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _curve_handles(curves: Sequence[Curve], marks: bool) -> list[Line2D]:
    """One legend entry per curve: its seeds, and its delay with ``marks``."""
    handles = []
    for curve in curves:
        text = f"{curve.label} ({seeds_text(len(curve.histories))})"
        if marks:
            text += f"; {delay_text(curve.t_train, curve.t_val, curve.budget, curve.clock)}"
        handles.append(Line2D([], [], color=curve.color, lw=5, label=text))
    return handles


def _style_handles(panels: Sequence[str], marks: bool) -> list[Line2D]:
    """The keys of the line styles the panels use, in gray."""
    key = dict(color="dimgray", lw=1.2)
    handles = []
    if {"accuracy", "loss", "best_accuracy"} & set(panels):
        handles += [Line2D([], [], ls="-", label="validation", **key), Line2D([], [], ls="--", label="train", **key)]
    if "best_accuracy" in panels:
        handles += [Line2D([], [], ls=":", label="validation, raw (best-accuracy panel)", **key)]
    if "attn_norm" in panels:
        handles += [Line2D([], [], ls=style, label=f"{name} (attention)", **key)
                    for name, style in zip(PROJECTIONS, PROJECTION_STYLES)]
    if marks:
        handles += [Line2D([], [], ls="--", lw=0.9, color="dimgray", label="mean T_train (vertical)"),
                    Line2D([], [], ls="-", lw=0.9, color="dimgray", label="mean T_val (vertical)")]
    return handles


def _legends(fig: plt.Figure, axes: Sequence[plt.Axes], curves: list[Line2D], styles: list[Line2D]) -> None:
    """Curves one per line under the panels, the style keys in one row under them: below the
    panels, no legend can hide a curve."""
    legend_below(fig, axes, curves, ncol=1, fontsize="small")
    if styles:
        fig.canvas.draw()
        bottom = fig.legends[-1].get_window_extent().y0 / fig.bbox.height
        fig.legend(handles=styles, loc="upper center", ncol=len(styles), frameon=False, fontsize="small",
                   bbox_to_anchor=(0.5, bottom))


def curves_figure(
    studies: Sequence[tuple[dict[str, dict], pd.DataFrame]], labels: Sequence[str],
    settings: Sequence[dict[str, Any]], pdf: str | Path, png: str | Path,
    panels: Sequence[str] = ("accuracy", "loss"), marks: bool = False, title: str = "",
) -> None:
    """Panels of ``panels`` side by side, every study's curves in each; ``studies`` holds each
    study's (histories, cells table), ``settings`` its settings (threshold, budget, task keys)."""
    curves: list[Curve] = []
    for i, ((histories, cells), label, study) in enumerate(zip(studies, labels, settings, strict=True)):
        curves += study_curves(histories, cells, label, STUDY_COLORMAPS[i % len(STUDY_COLORMAPS)],
                               study["budget"], study.get("clock", "steps"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for curve in curves:
            for key, projection, style in PANEL_LINES[panel]:
                _draw_band(ax, curve.band(key, projection), curve.color, style)
            if marks:
                _draw_marks(ax, curve)
        _style_panel(ax, panel, [s["threshold"] for s in settings], settings[0].get("clock", "steps"),
                     settings[0].get("loss"))
    fig.tight_layout()
    heading = [title] if title else []
    fig.suptitle("\n".join(heading + [study_settings(lb, s) for lb, s in zip(labels, settings)]),
                 y=1.0, va="bottom", fontsize="medium")
    _legends(fig, axes[0], _curve_handles(curves, marks), _style_handles(panels, marks))
    save_figure(fig, pdf, png)


def setting_text(settings: dict[str, Any]) -> str:
    """'x / y mod 97, alpha 0.3, batch 512': what a table row's study trains (keys its task lacks are
    left out)."""
    parts = [settings["task"]] if "task" in settings else []
    if "train_fraction" in settings:
        parts.append(f"alpha {settings['train_fraction']:g}")
    if "batch_size" in settings:
        parts.append("full batch" if settings["batch_size"] == 0 else f"batch {settings['batch_size']}")
    return ", ".join(parts)


def curve_table(studies: Sequence[tuple[str, pd.DataFrame, pd.DataFrame]],
                settings: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (study, lr, wd) point from its (label, cells, phases): threshold steps as mean
    over the seeds that reached them and how many did, the delay T_val - T_train over the seeds
    that reached both, final accuracies as mean and sample std over seeds, and how many seeds ended
    in each phase; ``settings`` (one dict per study) says what each trains."""
    rows = []
    for i, (label, cells, phases) in enumerate(studies):
        for (lr, wd), seeds in cells.groupby(["lr", "wd"], sort=True):
            counts = phases[phases["cell_id"].isin(seeds["cell_id"])]["phase"].value_counts()
            rows.append({
                "label": label, "setting": setting_text(settings[i]) if settings else "", "lr": lr, "wd": wd, "budget": int(seeds["budget"].max()), "seeds": len(seeds),
                "t_train": mean_reached(seeds["t_train"]), "t_train_reached": int(seeds["t_train"].notna().sum()),
                "t_val": mean_reached(seeds["t_val"]), "t_val_reached": int(seeds["t_val"].notna().sum()),
                "delay": mean_reached((seeds["t_val"] - seeds["t_train"]).dropna()),
                "train_acc": seeds["final_train_acc"].mean(), "train_acc_std": seeds["final_train_acc"].std(),
                "val_acc": seeds["final_val_acc"].mean(), "val_acc_std": seeds["final_val_acc"].std(),
                **{phase: int(counts.get(phase, 0)) for phase in PHASES},
            })
    return pd.DataFrame(rows)


def _step_cell(mean: float | None, reached: int, seeds: int) -> str:
    return f"{'—' if mean is None or pd.isna(mean) else f'{mean:,.0f}'} ({reached}/{seeds})"


def _accuracy_cell(mean: float, std: float) -> str:
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


TABLE_HEADER = ["study", "trains", "lr", "wd", "budget", "T_train (reached)", "T_val (reached)", "delay",
                "final train acc", "final val acc", *PHASES]


def table_text(table: pd.DataFrame) -> list[list[str]]:
    """The rows of ``curve_table`` as the strings the figure shows, in ``TABLE_HEADER`` order."""
    return [[row.label, row.setting, f"{row.lr:.3g}", f"{row.wd:.3g}", f"{row.budget:,}",
             _step_cell(row.t_train, row.t_train_reached, row.seeds),
             _step_cell(row.t_val, row.t_val_reached, row.seeds),
             "—" if row.delay is None or pd.isna(row.delay) else f"{row.delay:,.0f}",
             _accuracy_cell(row.train_acc, row.train_acc_std), _accuracy_cell(row.val_acc, row.val_acc_std),
             *(str(getattr(row, phase)) for phase in PHASES)]
            for row in table.itertuples()]


def curve_table_figure(table: pd.DataFrame, pdf: str | Path, png: str | Path, title: str = "") -> None:
    """``curve_table`` drawn as a table, for the report (a figure target is a pdf and a png)."""
    fig, ax, drawn = table_figure(table_text(table), TABLE_HEADER, 13, 0.3 + 0.3 * (len(table) + 1))
    note = ("T: mean step over the seeds that reached the threshold (reached/seeds); delay: T_val - T_train "
            "over the seeds that reached both; accuracy: mean ± std over seeds")
    ax.set_title(f"{title}\n{note}" if title else note, fontsize="medium")
    save_figure(fig, pdf, png)
