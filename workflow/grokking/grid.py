"""Expand a study's axes into cells (one training run each) and group cells into shards.

The grid is data: the Snakefile and the training CLI both call these functions, so a shard's cells
are defined in exactly one place.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

CELL_COLUMNS = ["cell_id", "lr", "wd", "data_seed", "model_seed", "activation"]
# Optional per-cell axes of a grid. Modular studies: the Gaussian noise added to the input
# embeddings while training and the factor on every initial parameter. Parity studies: the weight
# decay switched to once the training set is fitted (NaN: never switched) and the probability of
# flipping each training label. MNIST studies: the init scale (else the study's init_scale) and
# the augmentation strength. A cell of a grid without one has the default, and neither its id
# nor its table mentions the axis.
OPTIONAL_AXES = ("noise", "init_scale", "wd_after", "label_noise", "augment")
AXIS_DEFAULTS = {"noise": 0.0, "init_scale": 1.0, "wd_after": float("nan"), "label_noise": 0.0, "augment": 0.0}
ID_PREFIXES = {"noise": "noise", "init_scale": "init", "wd_after": "wdm", "label_noise": "flip", "augment": "aug"}
# Per-cell choices by name (MNIST, 003 Table 3): the loss and the optimizer, where a grid varies
# them; an id carries the name itself. A cell of a grid without one takes its task's default.
CHOICE_AXES = ("loss", "optimizer")


def axis_values(axis: dict[str, Any]) -> list[float]:
    """Values of one axis: explicit ``values`` (numbers, or names on a choice axis) or a log/linear
    range (numpy's logspace/linspace)."""
    if "values" in axis:
        return [v if isinstance(v, str) else float(v) for v in axis["values"]]
    if axis["scale"] == "log":
        values = np.logspace(np.log10(axis["min"]), np.log10(axis["max"]), axis["num"])
    else:
        values = np.linspace(axis["min"], axis["max"], axis["num"])
    return [float(v) for v in values]


def cell_id(lr: float, wd: float, data_seed: int, model_seed: int, activation: str, **axes: float | str) -> str:
    """A stable, readable id: the values themselves, rounded to 4 significant digits (optional axes
    only where the grid has them, so the ids of lr x wd grids never change)."""
    extra = "".join(f"_{ID_PREFIXES[name]}{axes[name]:.4g}" for name in OPTIONAL_AXES if name in axes)
    extra += "".join(f"_{axes[name]}" for name in CHOICE_AXES if name in axes)
    return f"lr{lr:.4g}_wd{wd:.4g}{extra}_d{data_seed}_m{model_seed}_{activation}"


def grid_axes(grid: dict[str, Any]) -> list[str]:
    """The axes of a grid, in a fixed order: lr, wd, then the optional and choice axes it has."""
    return ["lr", "wd", *(name for name in (*OPTIONAL_AXES, *CHOICE_AXES) if name in grid)]


def grid_points(grid: dict[str, Any]) -> list[dict[str, float]]:
    """The points of a grid ({axis: value}): every combination, the i-th value of every axis together
    (pairwise), or ``sample: {n, seed}`` points drawn without replacement from every combination.

    Pairwise grids pick a few cells of interest (appendix C's trajectories) without training the
    whole cross product; the config check makes the value lists equally long. A sample stands for a
    product too large to train (003's hyperparameter correlations): seeded, so a config names the
    same points on every machine, and kept in the product's order; a smaller n (a preset) draws the
    first points of the same permutation, so its cells are cells of the larger sample.
    """
    names = grid_axes(grid)
    values = [axis_values(grid[name]) for name in names]
    if grid.get("pairwise"):
        points = list(zip(*values))
    else:
        points = list(itertools.product(*values))
    if "sample" in grid:
        n, seed = grid["sample"]["n"], grid["sample"]["seed"]
        if n > len(points):
            raise ValueError(f"grid.sample.n: {n} points asked of a grid of {len(points)}")
        chosen = np.random.default_rng(seed).permutation(len(points))[:n]  # nested: n = 4 is within n = 10
        points = [points[i] for i in sorted(chosen)]
    return [dict(zip(names, point)) for point in points]


def study_cells(study: dict[str, Any]) -> pd.DataFrame:
    """All cells of a study, one row each, in a fixed order (activation, seeds, lr, wd)."""
    rows = [
        {
            "cell_id": cell_id(data_seed=data_seed, model_seed=model_seed, activation=activation, **point),
            **point,
            "data_seed": data_seed,
            "model_seed": model_seed,
            "activation": activation,
        }
        for activation, data_seed, model_seed, point in itertools.product(
            study["activations"],
            study["data_seeds"],
            study["model_seeds"],
            grid_points(study["grid"]),
        )
    ]
    cells = pd.DataFrame(rows, columns=cell_columns(study["grid"]))
    duplicated = cells["cell_id"][cells["cell_id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(
            f"grid values too close to tell apart at 4 significant digits: {duplicated.iloc[0]}"
        )
    return cells


def cell_columns(grid: dict[str, Any]) -> list[str]:
    """The columns that define a cell of this grid: CELL_COLUMNS and the optional axes it has."""
    return [*CELL_COLUMNS[:3], *grid_axes(grid)[2:], *CELL_COLUMNS[3:]]


def axis_column(cells: pd.DataFrame, name: str) -> pd.Series:
    """A per-cell axis of a cells table, with its default where the grid has no such axis."""
    return cells[name] if name in cells else pd.Series(AXIS_DEFAULTS[name], index=cells.index)


def shard_size(study: dict[str, Any], engine: dict[str, Any]) -> int:
    return int(study.get("shard_size", engine["shard_size"]))


def assign_shards(cells: pd.DataFrame, size: int) -> pd.DataFrame:
    """Add a ``shard`` column. Cells of one shard share an activation (one architecture)."""
    shards = []
    counter = 0
    for _, group in cells.groupby("activation", sort=False):
        n_shards = -(-len(group) // size)
        for chunk in np.array_split(np.arange(len(group)), n_shards):
            shards.extend([f"s{counter:03d}"] * len(chunk))
            counter += 1
    out = cells.copy()
    out["shard"] = shards
    return out


def study_shards(study: dict[str, Any], engine: dict[str, Any]) -> pd.DataFrame:
    """Cells of a study with their shard; balanced shards of at most ``shard_size`` cells."""
    return assign_shards(study_cells(study), shard_size(study, engine))


# Study keys that decide which cells a study has (shard_size then decides which shard trains each).
LAYOUT_KEYS = ("grid", "activations", "data_seeds", "model_seeds")


def cell_layout(study: dict[str, Any], engine: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a study's cells and their shards, and nothing else: a reader of shard
    files recomputes from it the cells each file must hold, and it changes only when shards retrain."""
    return {**{key: study[key] for key in LAYOUT_KEYS}, "shard_size": shard_size(study, engine)}


def shard_cell_ids(layout: dict[str, Any]) -> dict[str, list[str]]:
    """Shard -> ids of the cells it trains, from a :func:`cell_layout`."""
    shards = assign_shards(study_cells(layout), layout["shard_size"])
    return {shard: list(group["cell_id"]) for shard, group in shards.groupby("shard")}


# Study keys that do not change a cell's training (grid placement and plotting only).
NOT_TRAINING_KEYS = (
    "grid", "shard_size", "grokking_gap", "data_seeds", "model_seeds", "activations", "extended_budget",
    "cell_steps_per_second",  # MNIST: only the SLURM runtime estimate
    "landscape",  # modular: read after training, by the landscape rule
)


def training_settings(study: dict[str, Any]) -> dict[str, Any]:
    """The part of a study's settings that a shard's results depend on (besides its cells)."""
    return {k: v for k, v in study.items() if k not in NOT_TRAINING_KEYS}
