"""Read a shard's files back, refusing damaged ones.

Shard files are written atomically, yet a full disk, an interrupted copy or an edit can still cut
one short. Read without checks, a metrics file's missing cells would vanish from the diagram and an
empty field would change a cell's phase (an empty `diverged` reads as diverged); so every reader
checks that the file holds exactly the cells of its shard, with every field filled that must be, and
stops with one line naming the file (io.damaged says how to recover).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from grokking import io
from grokking.grid import CELL_COLUMNS

# Columns of a shard's metrics (engine.metrics_table) that every row fills, and those left empty when
# a threshold was never reached or the cell never diverged.
FILLED_COLUMNS = [*CELL_COLUMNS, "budget", "steps_run", "final_train_acc", "final_val_acc", "diverged"]
OPTIONAL_COLUMNS = ["t_train", "t_val", "diverged_step"]


def shard_of(path: str | os.PathLike) -> str:
    """The shard a file belongs to, from its name (results/<study>/shards/<shard>.metrics.csv)."""
    return Path(path).name.split(".")[0]


def read_shard_metrics(path: str | os.PathLike, cell_ids: Collection[str]) -> pd.DataFrame:
    """A shard's metrics table, checked to hold one whole row for each of ``cell_ids``."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise io.damaged(path, f"not a readable table: {error}") from None
    absent = [c for c in FILLED_COLUMNS + OPTIONAL_COLUMNS if c not in table.columns]
    if absent:
        raise io.damaged(path, f"no column {', '.join(absent)}")
    _check_cells(path, list(table["cell_id"].dropna()), cell_ids)
    empty = table[FILLED_COLUMNS].isna()
    if empty.to_numpy().any():
        row, column = next((r, c) for r, c in zip(*empty.to_numpy().nonzero()))
        raise io.damaged(path, f"empty {FILLED_COLUMNS[column]} in row {row + 1} "
                               f"(cell {table['cell_id'].iloc[row]})")
    return table


def read_shards_metrics(paths: list[str], cell_ids_by_shard: dict[str, list[str]]) -> pd.DataFrame:
    """The metrics of several shards in one table, each file checked against the cells of the shard
    it is named after."""
    return pd.concat([read_shard_metrics(path, cell_ids_by_shard.get(shard_of(path), [])) for path in paths],
                     ignore_index=True)


def load_resume_state(path: str | os.PathLike, cell_ids: Collection[str]) -> dict[str, Any]:
    """A shard's saved end state, checked to hold the state of every cell to continue."""
    state = io.load_torch(path)
    saved = [] if state is None else state.get("cell_ids", [])
    missing = sorted(set(cell_ids) - set(saved))
    if missing:
        raise io.damaged(path, f"no saved state for {len(missing)} of the {len(cell_ids)} cells to continue "
                               f"(e.g. {missing[0]})")
    return state


def _check_cells(path: str | os.PathLike, found: list[str], expected: Collection[str]) -> None:
    """The cell ids in a file are exactly the expected ones, each once."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise io.damaged(path, f"{len(missing)} of its {len(expected)} cells are missing (e.g. {missing[0]})")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise io.damaged(path, f"it holds cells that are not in its shard (e.g. {unexpected[0]})")
    if len(found) != len(set(found)):
        raise io.damaged(path, "a cell is listed twice")
