"""The table steps between training and figures, on hand-made tables."""

import numpy as np
import pandas as pd

from grokking.tables import aggregate_cells, merge_extended, phase_changes, select_reruns


def cells() -> pd.DataFrame:
    """Four cells of one shard: comprehension, memorization, confusion, confusion that diverged."""
    return pd.DataFrame({
        "cell_id": ["a", "b", "c", "d"], "lr": [1e-3, 1e-3, 1e-2, 1e-2], "wd": [0.0, 1.0, 0.0, 1.0],
        "data_seed": 42, "model_seed": 102, "activation": "tanh", "budget": 100, "steps_run": [40, 100, 100, 7],
        "t_train": [10, 20, np.nan, np.nan], "t_val": [30, np.nan, np.nan, np.nan],
        "diverged": [False, False, False, True], "shard": "s000",
    })


def phases() -> pd.DataFrame:
    return pd.DataFrame({"cell_id": ["d", "c", "b", "a"],
                         "phase": ["confusion", "confusion", "memorization", "comprehension"]})


def test_reruns_are_the_cells_that_did_not_converge_and_did_not_diverge():
    chosen = select_reruns(cells(), phases())
    assert list(chosen["cell_id"]) == ["b", "c"]
    assert list(chosen.columns) == ["cell_id", "lr", "wd", "data_seed", "model_seed", "activation", "shard"]


def test_merge_keeps_converged_cells_and_takes_the_continued_ones():
    continued = pd.DataFrame({"cell_id": ["c"], "budget": [200], "steps_run": [150], "t_train": [120.0],
                              "t_val": [140.0], "diverged": [False]})
    merged = merge_extended(cells(), continued, 200).set_index("cell_id")
    assert merged.loc["c", "t_val"] == 140 and merged.loc["c", "steps_run"] == 150
    assert merged.loc["a", "t_val"] == 30 and merged.loc["a", "steps_run"] == 40  # untouched
    assert set(merged["budget"]) == {200}
    assert list(merge_extended(cells(), None, 200)["t_val"].fillna(-1)) == [30, -1, -1, -1]


def test_phase_changes_lists_only_cells_whose_phase_moved():
    base = phases().assign(t_train=1, t_val=2)
    extended = base.assign(phase=["confusion", "grokking", "memorization", "comprehension"], t_val=[2, 900, 2, 2])
    changed = phase_changes(base, extended)
    assert list(changed["cell_id"]) == ["c"]
    assert (changed["phase_base"].item(), changed["phase_extended"].item(), changed["t_val_extended"].item()) == (
        "confusion", "grokking", 900)


def test_aggregate_sorts_cells_by_their_coordinates():
    shards = [cells().iloc[2:], cells().iloc[:2]]
    assert list(aggregate_cells(shards)["cell_id"]) == ["a", "b", "c", "d"]
