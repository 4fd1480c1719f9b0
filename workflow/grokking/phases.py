"""The phase rule of the report (section 3): one pure function of T_train, T_val and the gap.

- both thresholds reached: comprehension if T_val - T_train < gap (a negative gap included),
  grokking otherwise (a gap of exactly ``gap`` steps is grokking);
- only the train threshold reached: memorization;
- train threshold not reached: confusion (even if validation was reached).

The rule reads the T values only, as the report's code does. A run whose loss became NaN/Inf keeps
the T values it reached before (its record freezes), so it is confusion when it never fitted the
training set and memorization when it did and then blew up before generalizing; the report draws
such runs the same way (its Fig. 2's confusion cells are all of this kind). Divergence is kept as a
column of its own (``diverged``) and drawn as a mark on top of the phase, never as a fifth phase.
"""

from __future__ import annotations

import math

import pandas as pd

PHASES = ("comprehension", "grokking", "memorization", "confusion")
# The report's colors.
PHASE_COLORS = {
    "comprehension": "yellowgreen",
    "grokking": "gold",
    "memorization": "darkslateblue",
    "confusion": "black",
}
PHASE_COLUMNS = ["cell_id", "lr", "wd", "data_seed", "model_seed", "activation", "budget", "t_train",
                 "t_val", "gap", "phase", "diverged"]


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def classify(t_train, t_val, gap: int) -> str:
    """Phase of one run from its threshold steps (None / NaN = never reached)."""
    train_reached, val_reached = not _missing(t_train), not _missing(t_val)
    if not train_reached:
        return "confusion"
    if not val_reached:
        return "memorization"
    return "comprehension" if t_val - t_train < gap else "grokking"


def classify_cells(cells: pd.DataFrame, gap: int) -> pd.DataFrame:
    """Phase of every cell; keeps the cell's coordinates, threshold steps and divergence next to it."""
    out = cells[[c for c in PHASE_COLUMNS if c in cells.columns]].copy()
    out["gap"] = out["t_val"] - out["t_train"]
    out["phase"] = [classify(tt, tv, gap) for tt, tv in zip(cells["t_train"], cells["t_val"])]
    out["diverged"] = cells["diverged"].astype(bool).to_numpy()
    return out[PHASE_COLUMNS]


def check_phase_labels(phases: pd.DataFrame, source: str = "phases table") -> None:
    """Refuse labels outside the four phases: a misspelt label would vanish from every count, and a
    table classified before divergence became a column (label ``diverged``) must be rebuilt."""
    unknown = sorted(set(phases["phase"]) - set(PHASES))
    if unknown:
        hint = (" (a table written before diverged runs were classified by their T values: delete it "
                "so that classify_phases rebuilds it)" if "diverged" in unknown else "")
        raise ValueError(f"{source}: unknown phase labels {unknown}; expected one of {list(PHASES)}{hint}")
