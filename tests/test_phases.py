"""The phase rule on a table of cases, including the edges of the report's definition."""

import pandas as pd
import pytest

from grokking.phases import check_phase_labels, classify, classify_cells

GAP = 1000


@pytest.mark.parametrize(
    "t_train,t_val,diverged,expected",
    [
        (300, 500, False, "comprehension"),  # gap 200
        (800, 400, False, "comprehension"),  # negative gap: validation first
        (100, 1099, False, "comprehension"),  # gap 999
        (100, 1100, False, "grokking"),  # gap exactly 1000
        (100, 50_000, False, "grokking"),
        (100, None, False, "memorization"),  # train only
        (None, 400, False, "confusion"),  # validation reached but not train
        (None, None, False, "confusion"),  # nothing reached
        # A diverged run keeps the T values it reached before; the report's rule reads only those.
        (None, None, True, "confusion"),  # blew up before fitting the training set
        (100, None, True, "memorization"),  # fitted the training set, then blew up
        (100, 200, True, "comprehension"),  # converged before it diverged
        (float("nan"), float("nan"), False, "confusion"),  # NaN read from a CSV means not reached
    ],
)
def test_phase_rule(t_train, t_val, diverged, expected):
    assert classify(t_train, t_val, GAP) == expected


def test_classify_cells_reads_nullable_steps():
    cells = pd.DataFrame(
        {
            "cell_id": ["a", "b", "c"], "lr": [1e-3, 1e-3, 1e-2], "wd": [0.0, 1.0, 0.0],
            "data_seed": 42, "model_seed": 102, "activation": "tanh", "budget": 100_000,
            "t_train": pd.array([10, 10, None], dtype="Int64"),
            "t_val": pd.array([2000, None, None], dtype="Int64"),
            "diverged": [False, True, True],
        }
    )
    phases = classify_cells(cells, GAP)
    assert phases["phase"].tolist() == ["grokking", "memorization", "confusion"]
    assert phases["diverged"].tolist() == [False, True, True]  # a column of its own, not a fifth phase
    assert phases["gap"].iloc[0] == 1990


def test_a_table_with_the_old_diverged_label_is_refused_with_a_hint():
    table = pd.DataFrame({"phase": ["grokking", "diverged"]})
    with pytest.raises(ValueError, match="delete it so that classify_phases rebuilds it"):
        check_phase_labels(table, "results/mnist/phases.csv")
