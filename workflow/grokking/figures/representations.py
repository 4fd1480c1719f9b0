"""Hidden representations of a sparse-parity run at its snapshot epochs (paper 002, Fig. 2): a t-SNE
of the hidden layer on the test inputs, one panel per epoch, points coloured by the first k
coordinates; each panel titled with the epoch's train and test accuracy and the silhouette of the 2^k
groups in the hidden space (``grokking.parity_analysis.cluster_score``), so "clusters appear only
after memorization" reads off the figure as numbers.

``epochs`` picks snapshot epochs (absent: all), ``model_seed`` the run (absent: the first cell of
the study's table). Matplotlib and scikit-learn are imported by ``draw`` only: config validation
reads this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grokking.figures import FigureKind, Histories, Inputs, Studies

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

PANELS_PER_ROW = 5


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """The study's ``histories``, its ``cells`` table (which run is which seed) and its ``dataset``."""
    study = spec["studies"][0]
    return {"histories": histories(study), "cells": [f"results/{study}/cells.csv"],
            "dataset": [f"results/{study}/dataset.pt"]}


def study_text(name: str, study: dict[str, Any]) -> str:
    """'name: (n=50, k=2) parity, 300 train / 100 test, width 500, full batch, budget 2,000 epochs':
    what a parity study trains (keys it lacks are left out)."""
    parts = [f"(n={study['n']}, k={study['k']}) parity" if "n" in study and "k" in study else "parity"]
    if "n_train" in study and "n_test" in study:
        parts.append(f"{study['n_train']} train / {study['n_test']} test")
    if "width" in study:
        parts.append(f"width {study['width']}")
    if "batch_size" in study:
        parts.append("full batch" if study["batch_size"] == 0 else f"batch {study['batch_size']}")
    if "budget" in study:
        parts.append(f"budget {study['budget']:,} epochs")
    return f"{name}: {', '.join(parts)}"


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    """The run and epochs drawn, and what the study trains (k colours the points)."""
    study = spec["studies"][0]
    return {"title": spec.get("title", ""), "epochs": spec.get("epochs"), "model_seed": spec.get("model_seed"),
            "k": studies[study]["k"], "study": study_text(study, studies[study])}


def cell_text(cell: Any) -> str:
    """'lr 0.1, wd 0.01, wd_after 0.1, seeds d0/m1 | T_train 120, T_val 850 epochs': the run drawn."""
    import pandas as pd

    parts = [f"lr {cell.lr:g}", f"wd {cell.wd:g}"]
    for column in ("wd_after", "label_noise"):
        value = getattr(cell, column, None)
        if value is not None and not pd.isna(value):
            parts.append(f"{column} {value:g}")
    epochs = lambda t: "not reached" if pd.isna(t) else f"{int(t):,}"  # noqa: E731
    return (f"{', '.join(parts)}, seeds d{cell.data_seed}/m{cell.model_seed} | "
            f"T_train {epochs(cell.t_train)}, T_val {epochs(cell.t_val)} epochs")


def chosen_run(files: Inputs, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The cell drawn (``options["model_seed"]``, else the table's first) and its history."""
    from grokking.curve_plots import read_cells
    from grokking.io import load_histories
    from grokking.parity_analysis import select_cell

    cell = select_cell(read_cells(files["cells"][0]), options.get("model_seed"))
    histories = load_histories(files["histories"])
    if cell.cell_id not in histories:
        raise ValueError(f"cell {cell.cell_id} has no history in {', '.join(files['histories'])}")
    history = histories[cell.cell_id]
    if "snapshots" not in history:
        raise ValueError(f"cell {cell.cell_id}'s history has no weight snapshots: is its study a parity study?")
    return cell, history


def panel_grid(n_panels: int, width: float, height: float) -> tuple["plt.Figure", list["plt.Axes"]]:
    """Panels in rows of ``PANELS_PER_ROW``, unused ones hidden."""
    import matplotlib.pyplot as plt

    cols = min(n_panels, PANELS_PER_ROW)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.lines import Line2D

    from grokking import parity_analysis as pa
    from grokking.io import load_torch
    from grokking.plots import legend_below, save_figure

    cell, history = chosen_run(files, options)
    k = int(options["k"])
    test = load_torch(files["dataset"][0])[int(cell.data_seed)]
    x = test["x_test"]
    groups = pa.parity_groups(x, k)
    snapshots = history["snapshots"]
    order = pa.snapshot_indices(snapshots, options.get("epochs"))
    colors = matplotlib.colormaps["tab10" if 2 ** k <= 10 else "tab20"]

    fig, axes = panel_grid(len(order), 3.0, 3.3)
    for ax, i in zip(axes, order):
        epoch = int(snapshots["epoch"][i])
        hidden = pa.hidden_representations(x, snapshots["hidden.weight"][i], snapshots["hidden.bias"][i])
        plane = pa.tsne_embedding(hidden)
        for g in range(2 ** k):
            ax.scatter(*plane[groups == g].T, s=9, color=colors(g % colors.N), alpha=0.85, linewidths=0)
        train, val = pa.accuracies_at(history, epoch)
        acc = lambda a: "n/a" if np.isnan(a) else f"{a:.2f}"  # noqa: E731
        ax.set_title(f"epoch {epoch:,}\ntrain acc {acc(train)}, test acc {acc(val)}\n"
                     f"silhouette {pa.cluster_score(hidden, groups):.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    n_test, width = len(groups), int(snapshots["hidden.weight"].shape[1])
    heading = [options["title"]] if options.get("title") else []
    fig.suptitle("\n".join(heading + [
        options["study"], cell_text(cell),
        f"t-SNE of the {width} hidden ReLU outputs on the {n_test} test inputs (perplexity "
        f"{pa.tsne_perplexity(n_test):g}, PCA init, random_state 0);\nsilhouette of the {2 ** k} groups in the "
        f"{width}-d hidden space (1: separate clusters, 0: mixed)"]), y=1.0, va="bottom", fontsize="medium")
    handles = [Line2D([], [], ls="", marker="o", color=colors(g % colors.N), label=pa.group_label(g, k))
               for g in range(2 ** k)]
    legend_below(fig, axes, handles, ncol=min(len(handles), 4), fontsize="small")
    save_figure(fig, pdf, png)


KIND = FigureKind("representations", inputs, options, draw, caption="representations.rst",
                  category="Sparse parity", n_studies=1, keys=("epochs", "model_seed"))
