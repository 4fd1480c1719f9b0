"""Numbers behind the sparse-parity figures (paper 002): hidden representations and how well they
cluster by the parity's relevant coordinates (Fig. 2), how the hidden weights gather at zero
(Fig. 3), and the weight decay or label noise from which on no run generalizes (Hypotheses 1-2).

No matplotlib here: the figures in grokking/figures/ draw these numbers, the tests check them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NEAR_ZERO = 0.01  # |w| below this counts as "at zero": ~7% of Linear(50, .)'s U(-0.14, 0.14) initial weights
SWEPT_COLUMNS = ("lr", "wd", "wd_after", "label_noise", "activation")  # per-cell axes a study may vary


def _numpy(value: Any) -> np.ndarray:
    """A tensor or array as a float64 numpy array (torch stays an optional import here)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


# Representations (Fig. 2)

def hidden_representations(x: Any, weight: Any, bias: Any) -> np.ndarray:
    """ReLU(x @ W.T + b), the hidden layer's output: x [T, n], W [width, n], b [width] -> [T, width]."""
    return np.maximum(_numpy(x) @ _numpy(weight).T + _numpy(bias), 0.0)


def parity_groups(x: Any, k: int) -> np.ndarray:
    """Group of each input by its first k coordinates, 0 .. 2^k - 1 (0: all +1; bit k-1-i set where
    x_(i+1) = -1), the 2^k colours of Fig. 2."""
    negative = _numpy(x)[:, :k] < 0  # [T, k]
    return (negative * (1 << np.arange(k - 1, -1, -1))).sum(axis=1).astype(int)


def group_label(group: int, k: int) -> str:
    """'x1=+1, x2=-1': the first k coordinates of a group of ``parity_groups``."""
    return ", ".join(f"x{i + 1}={'-1' if group >> (k - 1 - i) & 1 else '+1'}" for i in range(k))


def cluster_score(hidden: Any, groups: Any) -> float:
    """Mean silhouette (scikit-learn, Euclidean) of the parity groups in the hidden space, in [-1, 1].

    Paper 002 reads Fig. 2 as "the representations split into 2^k clusters by the first k coordinates
    only after memorization": the silhouette turns that into a number. Near 1, every input lies much
    closer to the inputs of its own group than to any other group (the hidden layer sees only the k
    relevant coordinates); near 0, the groups overlap, as they do for a random or memorizing layer
    that depends on all n coordinates. It is computed in the hidden space, not on the t-SNE plane,
    whose distances t-SNE distorts. NaN where it is undefined (fewer than two groups, or as many
    groups as inputs).
    """
    from sklearn.metrics import silhouette_score

    hidden, groups = _numpy(hidden), np.asarray(groups)
    if not 2 <= len(np.unique(groups)) <= len(groups) - 1:
        return float("nan")
    return float(silhouette_score(hidden, groups))


def tsne_perplexity(n_points: int) -> float:
    """min(30, (T - 1) / 3): scikit-learn's default 30 where the test set is large enough, else as
    large as t-SNE's rule of thumb (3 x perplexity < points) allows."""
    return float(min(30.0, (n_points - 1) / 3))


def tsne_embedding(hidden: Any) -> np.ndarray:
    """2-d t-SNE of the rows of ``hidden`` (seeded: PCA init, random_state 0, ``tsne_perplexity``).
    A layer whose outputs are all equal (every ReLU dead) has no structure to embed: all at 0.

    One OpenMP thread: a hundred points need no more, and on a node whose cores are busy training,
    scikit-learn's threads of the Barnes-Hut gradient waited on each other for 4-35 s per call where
    one thread takes 0.1 s (same embedding)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    hidden = _numpy(hidden)
    if np.ptp(hidden, axis=0).max(initial=0.0) == 0:
        return np.zeros((len(hidden), 2))
    with threadpool_limits(1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=tsne_perplexity(len(hidden)), init="pca",
                    random_state=0).fit_transform(hidden)


# Snapshots and histories

def snapshot_indices(snapshots: dict[str, Any], epochs: list[int] | None) -> list[int]:
    """Positions in ``snapshots["epoch"]`` of the asked epochs, in the asked order (None: all); an
    epoch without a snapshot is an error that lists those there are."""
    saved = [int(e) for e in _numpy(snapshots["epoch"])]
    if epochs is None:
        return list(range(len(saved)))
    missing = [e for e in epochs if e not in saved]
    if missing:
        raise ValueError(f"no snapshot at epoch {', '.join(map(str, missing))} (snapshots at epochs "
                         f"{', '.join(map(str, saved))}): pick epochs among the study's snapshot_epochs")
    return [saved.index(e) for e in epochs]


def accuracies_at(history: dict[str, Any], epoch: int) -> tuple[float, float]:
    """(train, test) accuracy of the history at ``epoch`` (NaN where it was not evaluated)."""
    steps = _numpy(history["step"])
    where = np.flatnonzero(steps == epoch)
    if not len(where):
        return float("nan"), float("nan")
    i = int(where[0])
    return float(_numpy(history["train_acc"])[i]), float(_numpy(history["val_acc"])[i])


def select_cell(cells: pd.DataFrame, model_seed: int | None = None) -> Any:
    """The first cell (a row of ``cells.itertuples()``) of the model seed, or the first cell of the
    table (None); a seed the table lacks is an error that lists those it has."""
    if model_seed is not None:
        chosen = cells[cells["model_seed"] == model_seed]
        if chosen.empty:
            raise ValueError(f"no cell has model_seed {model_seed} (model seeds: "
                             f"{', '.join(map(str, sorted(cells['model_seed'].unique())))})")
        cells = chosen
    return next(cells.itertuples())


# Weights (Fig. 3)

def weight_stats(weights: Any, near: float = NEAR_ZERO) -> dict[str, np.ndarray]:
    """Per snapshot of ``weights`` [S, ...]: the share of entries with |w| < ``near`` and their
    standard deviation, the two numbers behind "the weights coalesce around zero"."""
    flat = _numpy(weights).reshape(len(weights), -1)  # [S, width * n]
    return {"near_zero": (np.abs(flat) < near).mean(axis=1), "std": flat.std(axis=1)}


def weight_density(values: Any, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE (scipy, Scott's bandwidth) of ``values`` on ``grid``; values that are all equal
    have no bandwidth: NaN."""
    from scipy.stats import gaussian_kde

    values = _numpy(values).ravel()
    if len(values) < 2 or values.std() == 0:
        return np.full(len(grid), np.nan)
    return gaussian_kde(values)(grid)


# Response to an axis (Hypotheses 1-2)

def axis_values(cells: pd.DataFrame, axis: str) -> pd.Series:
    """Each cell's value of ``axis`` as a number: a cell never switched (``wd_after`` empty) keeps
    its weight decay after memorization, so it counts as ``wd_after`` = its ``wd``; a cell without
    label noise (``label_noise`` empty or absent) as 0."""
    if axis == "wd_after":
        values = cells["wd_after"] if "wd_after" in cells else pd.Series(np.nan, index=cells.index)
        return values.astype(float).fillna(cells["wd"].astype(float))
    if axis == "label_noise":
        values = cells["label_noise"] if "label_noise" in cells else pd.Series(np.nan, index=cells.index)
        return values.astype(float).fillna(0.0)
    return cells[axis].astype(float)


def generalization_threshold(cells: pd.DataFrame, axis: str) -> float | None:
    """The smallest value of ``axis`` from which on (at it and at every larger value) no seed
    generalizes (T_val empty: test accuracy never reached the threshold); None where some seed
    generalizes at the largest value. Where no seed generalizes anywhere, the smallest value."""
    values = axis_values(cells, axis)
    generalized = cells["t_val"].notna().groupby(values).any().sort_index()
    threshold = None
    for value, any_seed in generalized[::-1].items():
        if any_seed:
            break
        threshold = float(value)
    return threshold


def other_axes(cells: pd.DataFrame, axis: str) -> list[str]:
    """The per-cell columns besides ``axis`` that take more than one value in ``cells``: each
    combination of their values is one line of a response figure."""
    return [c for c in SWEPT_COLUMNS
            if c != axis and c in cells and cells[c].nunique(dropna=False) > 1]


def response_lines(cells: pd.DataFrame, axis: str) -> list[tuple[str, pd.DataFrame]]:
    """The lines of a response figure: one per combination of ``other_axes``, named by it ('wd 0.01';
    '' for a table that varies only ``axis``), each a copy of its cells with an ``x`` column (their
    ``axis_values``) and ``t_val`` as floats (NaN: never generalized), sorted by x."""
    cells = cells.assign(x=axis_values(cells, axis), t_val=cells["t_val"].astype("Float64").astype(float))
    by = other_axes(cells, axis)
    if not by:
        return [("", cells.sort_values("x", kind="stable"))]
    lines = []
    for values, group in cells.groupby(by, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        name = ", ".join(f"{c} {'none' if pd.isna(v) else format(v, 'g') if isinstance(v, float) else v}"
                         for c, v in zip(by, values))
        lines.append((name, group.sort_values("x", kind="stable")))
    return lines
