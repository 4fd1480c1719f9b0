"""The table steps between training and figures, as pure functions of DataFrames.

The CLI verbs only read files, call one of these and write the result, so each rule's logic can be
tested on hand-made tables (tests/test_tables.py).
"""

from __future__ import annotations

import pandas as pd

from grokking.grid import CELL_COLUMNS, CHOICE_AXES, OPTIONAL_AXES

NOT_CONVERGED = ("memorization", "confusion")
CELL_ORDER = ["activation", "data_seed", "model_seed", "lr", "wd"]


def aggregate_cells(shard_metrics: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per cell of a study, from its shards' (already checked) metrics tables."""
    return pd.concat(shard_metrics, ignore_index=True).sort_values(CELL_ORDER)


def select_reruns(cells: pd.DataFrame, phases: pd.DataFrame) -> pd.DataFrame:
    """The cells to continue to the extended budget: not converged (memorization, confusion).

    Diverged cells are not continued (their state is NaN); converged cells keep their results,
    since with early stopping their T values cannot change. Columns: the cell's, then its shard.
    """
    table = cells.merge(phases[["cell_id", "phase"]], on="cell_id", validate="one_to_one")
    chosen = table[table["phase"].isin(NOT_CONVERGED) & ~table["diverged"].astype(bool)]
    axes = [name for name in (*OPTIONAL_AXES, *CHOICE_AXES) if name in chosen]  # a continued cell keeps its axes
    return chosen[[*CELL_COLUMNS[:3], *axes, *CELL_COLUMNS[3:], "shard"]]


def merge_extended(cells: pd.DataFrame, continued: pd.DataFrame | None, budget: int) -> pd.DataFrame:
    """Every cell at the extended budget: the continued cells' new results, the others' old ones."""
    merged = cells.set_index("cell_id")
    if continued is not None and len(continued):
        new = continued.set_index("cell_id")
        columns = new.columns.intersection(merged.columns)
        merged.loc[new.index, columns] = new[columns]
    merged["budget"] = budget
    return merged.reset_index()


def phase_changes(base: pd.DataFrame, extended: pd.DataFrame) -> pd.DataFrame:
    """The cells whose phase differs between the base and the extended budget, with both T values."""
    both = base.merge(extended[["cell_id", "t_train", "t_val", "phase"]], on="cell_id",
                      suffixes=("_base", "_extended"))
    return both[both["phase_base"] != both["phase_extended"]]
