"""Why MNIST groks: 003's Table 3 (one change at a time) and Omnigrok's init-scale and weight-norm figures.

Every number comes from the studies' cells and phases tables; the table functions are pure, so the
figures and the tests share them:

- ``change_table``: one row per cell of 003 Table 3, its change from the base row (as configured,
  and as computed from the settings), our phase by the pipeline's rule (``grokking.phases``),
  T_train, T_val, delay, final accuracies, the report's verdict and whether both agree;
- ``scale_table``: T values and final accuracies of a study's cells against their init scale;
- ``lu_table``: final accuracies over init scale x training-set size (Omnigrok's "LU" maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from grokking.io import atomic_path, write_csv
from grokking.plots import legend_below, save_figure, table_figure

# What defines a Table 3 row: study settings, then per-cell values (the cells table's columns where
# the grid has the axis, else the study's value or the default).
STUDY_SETTINGS = ("subset_size", "batch_size", "init_scale", "constrain_norm")
CELL_DEFAULTS = {"augment": 0.0, "loss": "mse", "optimizer": "adamw"}
SETTING_TEXT = {
    "subset_size": lambda v: f"training set {int(v):,}",
    "batch_size": lambda v: f"batch {int(v)}",
    "init_scale": lambda v: f"init scale {v:g}",
    "constrain_norm": lambda v: "norm held at its initial value" if v else "norm free",
    "lr": lambda v: f"lr {v:g}",
    "wd": lambda v: "no weight decay" if v == 0 else f"weight decay {v:g}",
    "augment": lambda v: "no augmentation" if v == 0 else f"augmentation sigma {v:g}",
    "loss": lambda v: {"mse": "MSE loss", "cross_entropy": "cross-entropy loss"}[v],
    "optimizer": lambda v: {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[v],
}
TRAIN_COLOR, TEST_COLOR = "tab:red", "tab:green"  # Omnigrok's notebook: train red, test green


def row_settings(study: dict[str, Any], cell: pd.Series) -> dict[str, Any]:
    """The settings of one trained cell: its study's, overridden by the cell's own axes."""
    settings = {key: study[key] for key in STUDY_SETTINGS}
    settings.update(lr=float(cell["lr"]), wd=float(cell["wd"]))
    for name, default in {"init_scale": study["init_scale"], **CELL_DEFAULTS}.items():
        value = cell[name] if name in cell.index and not pd.isna(cell[name]) else default
        settings[name] = value if isinstance(value, str) else float(value)
    return settings


def differences(base: dict[str, Any], settings: dict[str, Any]) -> str:
    """What ``settings`` changes from ``base``, in words ("" when nothing does)."""
    return "; ".join(SETTING_TEXT[key](value) for key, value in settings.items() if base[key] != value)


def _step(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def change_table(rows: Sequence[dict[str, Any]], cells: Sequence[pd.DataFrame], phases: Sequence[pd.DataFrame],
                 studies: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per configured change: ``rows`` holds each change's ``study`` (index into ``cells``,
    ``phases`` and ``studies``), ``cell_id``, ``change`` and the report's ``report`` (True, False or
    None) and ``comment``; the first row is the base the others change."""
    out = []
    for row in rows:
        i = row["study"]
        cell = cells[i].set_index("cell_id").loc[row["cell_id"]]
        phase = phases[i].set_index("cell_id").loc[row["cell_id"], "phase"]
        t_train, t_val = _step(cell["t_train"]), _step(cell["t_val"])
        report = row.get("report")
        out.append({
            "change": row["change"], "settings": row_settings(studies[i], cell),
            "phase": phase, "grokked": phase == "grokking",
            "t_train": t_train, "t_val": t_val,
            "delay": None if t_train is None or t_val is None else t_val - t_train,
            "final_train_acc": float(cell["final_train_acc"]), "final_test_acc": float(cell["final_val_acc"]),
            "budget": int(cell["budget"]), "threshold": float(studies[i]["threshold"]),
            "grokking_gap": int(studies[i]["grokking_gap"]),
            "report_grokked": report, "report_comment": row.get("comment", ""),
            "agrees": None if report is None else (phase == "grokking") == report,
            "study": row["study_name"], "cell_id": row["cell_id"],
        })
    base = out[0]["settings"]
    for entry in out:
        entry["differs_from_base"] = differences(base, entry.pop("settings"))
    columns = ["change", "differs_from_base", "grokked", "phase", "t_train", "t_val", "delay", "final_train_acc",
               "final_test_acc", "report_grokked", "report_comment", "agrees", "budget", "threshold", "grokking_gap",
               "study", "cell_id"]
    table = pd.DataFrame(out, columns=columns)
    for name in ("t_train", "t_val", "delay"):
        table[name] = table[name].astype("Int64")
    return table


def _yes_no(value: Any, yes: str = "yes", no: str = "no") -> str:
    return "—" if value is None or pd.isna(value) else (yes if value else no)


def _steps_text(value: Any) -> str:
    return "—" if pd.isna(value) else f"{int(value):,}"


TABLE_HEADER = ["change", "grokked?", "phase", "T_train", "T_val", "delay", "final train acc", "final test acc",
                "report: grokked?", "report's comment", "agree?"]


def table_text(table: pd.DataFrame) -> list[list[str]]:
    """The rows of ``change_table`` as the strings the image and the Markdown show."""
    return [[row.change, _yes_no(row.grokked), row.phase, _steps_text(row.t_train), _steps_text(row.t_val),
             _steps_text(row.delay), f"{row.final_train_acc:.3f}", f"{row.final_test_acc:.3f}",
             _yes_no(row.report_grokked), row.report_comment, _yes_no(row.agrees)]
            for row in table.itertuples()]


def table_note(table: pd.DataFrame) -> str:
    budgets = sorted(set(table["budget"]))
    thresholds = sorted(set(table["threshold"]))
    gaps = sorted(set(table["grokking_gap"]))
    return (f"grokked? = phase grokking by the pipeline's rule: train and test accuracy above "
            f"{', '.join(f'{t:g}' for t in thresholds)} (at T_train, T_val) and T_val - T_train >= "
            f"{', '.join(f'{g:,}' for g in gaps)} steps;\nbudget {', '.join(f'{b:,}' for b in budgets)} steps; "
            f"'—': not reached, or no verdict")


def table_markdown(table: pd.DataFrame, title: str = "") -> str:
    """``change_table`` as Markdown: a title, the note, one line per change."""
    lines = [f"# {title or 'One change at a time'}", "", table_note(table).replace("\n", " "), "",
             "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table_text(table)]
    return "\n".join(lines) + "\n"


def write_table_files(table: pd.DataFrame, png: str | Path, title: str) -> None:
    """CSV and Markdown beside the figure's image (``<figure>.csv``, ``<figure>.md``)."""
    write_csv(table, Path(png).with_suffix(".csv"))
    with atomic_path(Path(png).with_suffix(".md")) as tmp:
        tmp.write_text(table_markdown(table, title))


def change_table_figure(table: pd.DataFrame, pdf: str | Path, png: str | Path, title: str = "") -> None:
    """``change_table`` drawn as a table; rows where ours and the report's verdict differ are tinted."""
    fig, ax, drawn = table_figure(table_text(table), TABLE_HEADER, 15, 0.5 + 0.32 * (len(table) + 1))
    for r, agrees in enumerate(table["agrees"], start=1):
        if agrees is False:
            for c in range(len(TABLE_HEADER)):
                drawn[r, c].set_facecolor("#fde0dc")
    note = table_note(table) + "; red rows: the report saw otherwise"
    ax.set_title(f"{title}\n{note}" if title else note, fontsize="medium")
    save_figure(fig, pdf, png)


# ----------------------------------------------------------------------------- curves of every row
def _log_steps(ax: plt.Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _plain_log_y(ax: plt.Axes) -> None:
    """Log y axis labelled 0.5, 3, 600 rather than 5 x 10^-1 (minor ticks labelled only over few decades)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.4g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def change_curves_figure(table: pd.DataFrame, histories: Sequence[dict[str, Any]], pdf: str | Path,
                         png: str | Path, title: str = "", per_line: int = 3) -> None:
    """For every row of ``change_table`` (``histories``: its cell's history, same order), train and
    test accuracy (left) and loss (right) against steps, log axis; the base row's test accuracy in
    gray in every other accuracy panel, vertical lines at T_train (dashed) and T_val (solid)."""
    n = len(table)
    lines = -(-n // per_line)
    fig, axes = plt.subplots(lines, 2 * per_line, figsize=(5.2 * per_line, 2.6 * lines + 0.6), squeeze=False)
    base = histories[0]
    for k, (row, history) in enumerate(zip(table.itertuples(), histories)):
        acc, loss = axes[k // per_line, 2 * (k % per_line)], axes[k // per_line, 2 * (k % per_line) + 1]
        steps = np.asarray(history["step"])
        drawn = steps > 0  # a log axis cannot show step 0
        if k:
            base_steps = np.asarray(base["step"])
            acc.plot(base_steps[base_steps > 0], np.asarray(base["val_acc"])[base_steps > 0], color="0.6", lw=1,
                     ls=":")
        for key, color, style in (("train", TRAIN_COLOR, "--"), ("val", TEST_COLOR, "-")):
            acc.plot(steps[drawn], np.asarray(history[f"{key}_acc"])[drawn], color=color, ls=style, lw=1.2)
            if f"{key}_loss" in history:
                loss.plot(steps[drawn], np.asarray(history[f"{key}_loss"])[drawn], color=color, ls=style, lw=1.2)
        for step, style in ((row.t_train, "--"), (row.t_val, "-")):
            if not pd.isna(step) and step > 0:
                acc.axvline(int(step), color="0.3", ls=style, lw=0.7)
        acc.axhline(row.threshold, color="0.6", lw=0.6, ls=":")
        acc.set_ylim(0, 1.02)
        _plain_log_y(loss)
        for ax in (acc, loss):
            _log_steps(ax)
            ax.tick_params(which="both", labelsize="x-small")
        verdict = f"ours: {row.phase}; report: {_yes_no(row.report_grokked, 'grokking', 'no grokking')}"
        acc.set_title(f"{row.change}\n{verdict}", fontsize="small", loc="left")
        acc.set_ylabel("accuracy", fontsize="small")
        loss.set_ylabel("loss (the row's own)", fontsize="small")
        if k // per_line == lines - 1 or k + per_line >= n:
            acc.set_xlabel("optimization steps", fontsize="small")
            loss.set_xlabel("optimization steps", fontsize="small")
    for k in range(n, lines * per_line):
        axes[k // per_line, 2 * (k % per_line)].axis("off")
        axes[k // per_line, 2 * (k % per_line) + 1].axis("off")
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.0, va="bottom", fontsize="medium")
    key = dict(lw=1.2)
    handles = [Line2D([], [], color=TRAIN_COLOR, ls="--", label="train", **key),
               Line2D([], [], color=TEST_COLOR, ls="-", label="test", **key),
               Line2D([], [], color="0.6", ls=":", label=f"test accuracy of the base row ({table['change'].iloc[0]})"),
               Line2D([], [], color="0.3", ls="--", lw=0.7, label="T_train"),
               Line2D([], [], color="0.3", ls="-", lw=0.7, label="T_val"),
               Line2D([], [], color="0.6", ls=":", lw=0.6, label="threshold")]
    legend_below(fig, list(axes.flat), handles, fontsize="small")
    save_figure(fig, pdf, png)


# ----------------------------------------------------------------------------- init scale
def scale_table(cells: pd.DataFrame, study: dict[str, Any]) -> pd.DataFrame:
    """Per cell, sorted by init scale: alpha, T_train, T_val, delay and final accuracies."""
    scale = cells["init_scale"] if "init_scale" in cells else pd.Series(float(study["init_scale"]), index=cells.index)
    table = pd.DataFrame({"init_scale": scale.astype(float), "t_train": cells["t_train"].astype("Int64"),
                          "t_val": cells["t_val"].astype("Int64"),
                          "final_train_acc": cells["final_train_acc"], "final_test_acc": cells["final_val_acc"]})
    table["delay"] = table["t_val"] - table["t_train"]
    return table.sort_values("init_scale").reset_index(drop=True)


def scale_sweep_figure(tables: Sequence[pd.DataFrame], labels: Sequence[str], settings: Sequence[dict[str, Any]],
                       pdf: str | Path, png: str | Path, title: str = "", mark: float | None = None) -> None:
    """Left: T_train and T_val against the init scale (log-log; a cross at the budget where a
    threshold was not reached); right: final train and test accuracy. One color per study."""
    fig, (steps_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    budget = max(int(s["budget"]) for s in settings)
    handles = []
    for i, (table, label, study) in enumerate(zip(tables, labels, settings)):
        color = colors[i % len(colors)]
        alpha = table["init_scale"].to_numpy()
        for key, style, marker in (("t_train", "--", "o"), ("t_val", "-", "s")):
            values = table[key].astype(float).to_numpy()
            steps_ax.plot(alpha, values, color=color, ls=style, marker=marker, ms=3.5, lw=1.2)
            missing = np.isnan(values)
            steps_ax.scatter(alpha[missing], np.full(missing.sum(), budget * 1.3), marker="x", color=color, s=20)
        acc_ax.plot(alpha, table["final_train_acc"], color=color, ls="--", marker="o", ms=3.5, lw=1.2)
        acc_ax.plot(alpha, table["final_test_acc"], color=color, ls="-", marker="s", ms=3.5, lw=1.2)
        handles.append(Line2D([], [], color=color, lw=5, label=f"{label}: training set {study['subset_size']:,}, "
                                                            f"batch {study['batch_size']}, budget "
                                                            f"{int(study['budget']):,} steps"))
    steps_ax.axhline(budget, color="0.6", lw=0.7, ls=":")
    _plain_log_y(steps_ax)
    steps_ax.set_ylabel("step at which accuracy > threshold")
    steps_ax.set_title("T_train (dashed), T_val (solid); x: not reached", fontsize="medium")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.set_ylabel("final accuracy")
    acc_ax.set_title("final train (dashed) and test (solid) accuracy", fontsize="medium")
    for ax in (steps_ax, acc_ax):
        ax.set_xscale("log")
        ax.set_xlabel(r"initialization scale $\alpha$ (every initial parameter times $\alpha$)")
        if mark is not None:
            ax.axvline(mark, color="0.5", lw=0.8, ls="-.")
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.0, va="bottom", fontsize="medium")
    if mark is not None:
        handles.append(Line2D([], [], color="0.5", lw=0.8, ls="-.", label=f"alpha = {mark:g}"))
    legend_below(fig, [steps_ax, acc_ax], handles, ncol=1, fontsize="small")
    save_figure(fig, pdf, png)


# ----------------------------------------------------------------------------- LU maps
def lu_table(cells: Sequence[pd.DataFrame], studies: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Every cell of the size studies: training-set size, init scale (the cell's axis, else its
    study's), final train and test accuracy. Two cells at one (size, scale) are an error."""
    frames = [pd.DataFrame({"subset_size": int(study["subset_size"]),
                            "init_scale": (c["init_scale"] if "init_scale" in c else
                                           pd.Series(study["init_scale"], index=c.index)).astype(float),
                            "final_train_acc": c["final_train_acc"], "final_test_acc": c["final_val_acc"]})
              for c, study in zip(cells, studies)]
    table = pd.concat(frames, ignore_index=True).sort_values(["subset_size", "init_scale"]).reset_index(drop=True)
    twice = table[table.duplicated(["subset_size", "init_scale"])]
    if len(twice):
        raise ValueError(f"two runs at training-set size {twice['subset_size'].iloc[0]} and init scale "
                         f"{twice['init_scale'].iloc[0]:g}: an LU map draws one run per size and scale")
    return table


def _tick_labels(values: np.ndarray, max_ticks: int = 7) -> tuple[np.ndarray, list[str]]:
    positions = np.unique(np.linspace(0, len(values) - 1, min(max_ticks, len(values))).round().astype(int))
    return positions, [f"{values[p]:,.3g}" if values[p] < 1000 else f"{int(values[p]):,}" for p in positions]


def lu_figure(table: pd.DataFrame, pdf: str | Path, png: str | Path, title: str = "",
              slices: int = 3, settings: str = "", held: bool = True) -> None:
    """Omnigrok's LU figure: final train and test accuracy over init scale (x) and training-set size
    (y), one grid cell per run; right, accuracy against alpha at a few sizes (train: the "L" of the
    training loss, test: the "U")."""
    train = table.pivot(index="subset_size", columns="init_scale", values="final_train_acc")
    test = table.pivot(index="subset_size", columns="init_scale", values="final_test_acc")
    alphas, sizes = train.columns.to_numpy(), train.index.to_numpy()
    alpha_text = (r"weight norm $\alpha = |w| / |w_0|$, held" if held else
                  r"initialization scale $\alpha$ (every initial parameter times $\alpha$)")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, grid, name in ((axes[0], train, "train"), (axes[1], test, "test")):
        image = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
        xs, xl = _tick_labels(alphas)
        ys, yl = _tick_labels(sizes, 10)
        ax.set_xticks(xs, xl, rotation=45)
        ax.set_yticks(ys, yl)
        ax.set_xlabel(alpha_text)
        ax.set_ylabel("training-set size N")
        ax.set_title(f"final {name} accuracy", fontsize="medium")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    chosen = sizes[np.unique(np.linspace(0, len(sizes) - 1, min(slices, len(sizes))).round().astype(int))]
    colors = plt.get_cmap("plasma")(np.linspace(0.1, 0.8, len(chosen)))
    for size, color in zip(chosen, colors):
        axes[2].plot(alphas, train.loc[size], color=color, ls="--", lw=1.2)
        axes[2].plot(alphas, test.loc[size], color=color, ls="-", lw=1.2, label=f"N = {int(size):,}")
    axes[2].set_xscale("log")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel(alpha_text)
    axes[2].set_ylabel("final accuracy")
    axes[2].set_title("train (dashed) and test (solid) at a few sizes", fontsize="medium")
    axes[2].legend(fontsize="small", frameon=False)
    fig.tight_layout()
    heading = "\n".join(text for text in (title, settings) if text)
    if heading:
        fig.suptitle(heading, y=1.0, va="bottom", fontsize="medium")
    save_figure(fig, pdf, png)
