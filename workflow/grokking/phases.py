"""The phase rule of the report (section 3): one pure function of T_train, T_val and the gap.

- both thresholds reached: comprehension if T_val - T_train < gap (a negative gap included),
  grokking otherwise (a gap of exactly ``gap`` steps is grokking);
- only the train threshold reached: memorization;
- train threshold not reached: confusion (even if validation was reached).

A run whose loss became NaN/Inf before it converged is labelled ``diverged`` rather than dropped.
"""

from __future__ import annotations

import math

import pandas as pd

PHASES = ("comprehension", "grokking", "memorization", "confusion")
DIVERGED = "diverged"
# The report's colors; diverged runs (not in the report) are light gray.
PHASE_COLORS = {
    "comprehension": "yellowgreen",
    "grokking": "gold",
    "memorization": "darkslateblue",
    "confusion": "black",
    DIVERGED: "lightgray",
}


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def classify(t_train, t_val, gap: int, diverged: bool = False) -> str:
    """Phase of one run from its threshold steps (None / NaN = never reached)."""
    train_reached, val_reached = not _missing(t_train), not _missing(t_val)
    if diverged and not (train_reached and val_reached):
        return DIVERGED
    if not train_reached:
        return "confusion"
    if not val_reached:
        return "memorization"
    return "comprehension" if t_val - t_train < gap else "grokking"


def classify_cells(cells: pd.DataFrame, gap: int) -> pd.DataFrame:
    """Phase of every cell; keeps the cell's coordinates and threshold steps next to it."""
    phases = [
        classify(tt, tv, gap, bool(dv))
        for tt, tv, dv in zip(cells["t_train"], cells["t_val"], cells["diverged"])
    ]
    keep = ["cell_id", "lr", "wd", "data_seed", "model_seed", "activation", "budget", "t_train", "t_val"]
    out = cells[keep].copy()
    out["gap"] = out["t_val"] - out["t_train"]
    out["phase"] = phases
    return out
