"""How the epochs to generalization and the final test accuracy respond to one per-cell axis (paper
002, Hypotheses 1 and 2): ``wd_after``, the weight decay switched to once a run memorizes, or
``label_noise``, the probability a training label is flipped. Left: each seed's T_val (an x at the
top where it never generalized within the budget), the mean over the seeds that did as a line; right:
the final test accuracy, mean and min-max band. One line per study and per value of every other axis
the study varies (e.g. wd). The title states, per line, the value from which on no seed generalizes
(``grokking.parity_analysis.generalization_threshold``): the threshold both hypotheses predict.

Matplotlib is imported by ``draw`` only: config validation reads this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from grokking.figures import FigureKind, Histories, Inputs, Studies
from grokking.figures.representations import study_text

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

AXIS_NAMES = {"wd_after": "wd_after: weight decay once memorized (never switched: its wd)",
              "label_noise": "label_noise p_t: probability a train label is flipped"}
TOP = 1.15  # height of the "not within budget" row, in budgets
DODGE = 4.0  # points between the seed dots of neighbouring lines at one axis value


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """``cells_<i>``: the runs of the i-th study."""
    return {f"cells_{i}": [f"results/{study}/cells.csv"] for i, study in enumerate(spec["studies"])}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    """The axis, one label per study, and each study's budget, threshold and what it trains."""
    return {"title": spec.get("title", ""), "axis": spec["axis"], "labels": list(spec.get("labels", spec["studies"])),
            "studies": [{"text": study_text(label, studies[s]), "budget": int(studies[s]["budget"]),
                         "threshold": float(studies[s].get("threshold", 1.0))}
                        for s, label in zip(spec["studies"], spec.get("labels", spec["studies"]))]}


def threshold_text(cells: "pd.DataFrame", axis: str) -> str:
    """What ``generalization_threshold`` found, in words."""
    from grokking.parity_analysis import generalization_threshold

    values = cells["x"]
    swept = f"{values.min():g}-{values.max():g}"
    threshold = generalization_threshold(cells, axis)
    if threshold is None:
        return f"threshold: none within the swept range {swept} (a seed generalizes at its largest value)"
    if threshold == values.min():
        return f"threshold: none, no seed generalizes anywhere in the swept range {swept}"
    return f"threshold {axis} = {threshold:g} (no seed generalizes at it or above; swept {swept})"


def x_scale(ax: "plt.Axes", values: "np.ndarray") -> None:
    """Log where positive values span a decade or more, symlog where a 0 joins them, else linear."""
    import numpy as np

    positive = values[values > 0]
    if len(positive) and positive.max() >= 10 * positive.min():
        if (values > 0).all():
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
    ticks = np.unique(values)
    if len(ticks) <= 8:
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()


def seeds_text(lines: Sequence["pd.DataFrame"]) -> str:
    """'5 seeds per point' (or '3-5 seeds per point' where points differ)."""
    counts = [int(n) for cells in lines for n in cells.groupby("x").size()]
    low, high = min(counts), max(counts)
    return f"{high} seed{'s' if high != 1 else ''} per point" if low == high else f"{low}-{high} seeds per point"


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    from grokking.curve_plots import read_cells
    from grokking.parity_analysis import response_lines
    from grokking.plots import legend_below, save_figure

    axis, studies = options["axis"], options["studies"]
    lines = []  # (name, cells)
    for i, (label, study) in enumerate(zip(options["labels"], studies)):
        for name, cells in response_lines(read_cells(files[f"cells_{i}"][0]), axis):
            lines.append((f"{label}, {name}" if name else label, cells))
    if not lines:
        raise ValueError("the figure's studies have no cells")
    top = TOP * max(s["budget"] for s in studies)

    # shared x: the dodged seed dots are not data to autoscale, the accuracy lines span every value
    fig, (t_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    handles, found = [], []  # legend entries, the threshold of each line
    for j, (name, cells) in enumerate(lines):
        color = f"C{j % 10}"
        shift = offset_copy(t_ax.transData, fig=fig, x=(j - (len(lines) - 1) / 2) * DODGE, units="points")
        reached = cells[cells["t_val"].notna()]
        never = cells[cells["t_val"].isna()]
        t_ax.scatter(reached["x"], reached["t_val"], s=16, color=color, alpha=0.6, linewidths=0, transform=shift)
        t_ax.scatter(never["x"], np.full(len(never), top), marker="x", s=22, color=color, transform=shift)
        mean = reached.groupby("x")["t_val"].mean().reindex(np.unique(cells["x"]))  # NaN: a gap in the line
        t_ax.plot(mean.index, mean.values, color=color, lw=1.4)

        acc = cells.groupby("x")["final_val_acc"].agg(["mean", "min", "max"])
        acc_ax.plot(acc.index, acc["mean"], color=color, lw=1.4, marker="o", ms=3)
        acc_ax.fill_between(acc.index, acc["min"], acc["max"], color=color, alpha=0.18, lw=0)
        handles.append(Line2D([], [], color=color, lw=4, label=name))
        found.append(f"{name}: {threshold_text(cells, axis)}")

    values = np.concatenate([cells["x"].to_numpy(float) for _, cells in lines])
    x_scale(acc_ax, values)
    for ax in (t_ax, acc_ax):
        ax.set_xlabel(AXIS_NAMES.get(axis, axis))
        ax.tick_params(labelbottom=True)
    for budget in sorted({s["budget"] for s in studies}):
        t_ax.axhline(budget, color="gray", ls=":", lw=0.8)
    t_ax.set_ylim(0, top * 1.06)
    ticks = [t for t in t_ax.get_yticks() if 0 <= t <= top / TOP]
    t_ax.set_yticks([*ticks, top], [f"{t:,.0f}" for t in ticks] + ["not within\nbudget"])
    t_ax.set_ylabel("T_val: epochs to generalization")
    t_ax.set_title("epochs to generalization (dots: seeds, line: mean\nof the seeds that generalized; "
                   "dotted: budget)", fontsize=9)
    acc_ax.axhline(0.5, color="gray", ls=":", lw=0.8)
    acc_ax.set_ylim(0, 1.02)
    acc_ax.set_ylabel("final test accuracy")
    acc_ax.set_title("final test accuracy (mean, band min-max over seeds;\ndotted: chance)", fontsize=9)
    fig.tight_layout()

    heading = [options["title"]] if options.get("title") else []
    thresholds = sorted({s["threshold"] for s in studies})
    fig.suptitle("\n".join(heading + [s["text"] for s in studies] + found + [
        f"{seeds_text([cells for _, cells in lines])}; T_val: first epoch with test accuracy >= "
        f"{', '.join(f'{t:g}' for t in thresholds)}"]), y=1.0, va="bottom", fontsize="medium")
    keys = [Line2D([], [], ls="", marker="o", color="dimgray", alpha=0.6, label="one seed's T_val"),
            Line2D([], [], ls="", marker="x", color="dimgray", label="a seed that never generalized")]
    legend_below(fig, [t_ax, acc_ax], handles, ncol=1, fontsize="small")
    fig.canvas.draw()
    bottom = fig.legends[-1].get_window_extent().y0 / fig.bbox.height
    fig.legend(handles=keys, loc="upper center", ncol=len(keys), frameon=False, fontsize="small",
               bbox_to_anchor=(0.5, bottom))
    save_figure(fig, pdf, png)


KIND = FigureKind("response", inputs, options, draw, caption="response.rst", category="Sparse parity",
                  keys=("axis", "labels"))
