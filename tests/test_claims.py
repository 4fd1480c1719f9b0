"""The claims measured on hand-made phase grids whose answers are worked out in the comments."""

import math

import pandas as pd
import pytest

from grokking.claims import claims_markdown, claims_table, grokking_neighbourhood, phase_counts

# D: a run that diverged before fitting the training set, which the report's rule calls confusion.
LETTERS = {"C": "comprehension", "G": "grokking", "M": "memorization", "X": "confusion", "D": "confusion"}


def grid(rows: list[str], data_seed: int = 41, model_seed: int = 101, activation: str = "tanh") -> pd.DataFrame:
    """A phases table from strings: rows[i] is the i-th smallest lr, character j the j-th smallest wd.

    C comprehension, G grokking, M memorization, X confusion, D confusion that diverged, "." no cell.
    """
    records = []
    for i, line in enumerate(rows):
        for j, letter in enumerate(line):
            if letter == ".":
                continue
            records.append({
                "cell_id": f"c{i}_{j}", "lr": 10.0 ** (i - 4), "wd": 10.0 ** (j - 3),
                "data_seed": data_seed, "model_seed": model_seed, "activation": activation,
                "budget": 1000, "t_train": 1.0, "t_val": 2.0, "gap": 1.0, "phase": LETTERS[letter],
                "diverged": letter == "D",
            })
    return pd.DataFrame(records).sample(frac=1.0, random_state=0)  # row order must not matter


# lr grows downwards in this layout (row 0 = smallest lr), wd to the right.
#   row 0: C C G M
#   row 1: C G G M
#   row 2: X G X M
# Grokking cells and their 4-neighbours / lines:
#   (0,2): (1,2)=G (0,1)=C (0,3)=M           -> C yes, M yes; row 0: C left, M right     -> between
#   (1,1): (0,1)=C (2,1)=G (1,0)=C (1,2)=G   -> C yes, M no;  row 1: C left, M right     -> between
#   (1,2): (0,2)=G (2,2)=X (1,1)=G (1,3)=M   -> C no,  M yes; row 1: C left, M right     -> between
#   (2,1): (1,1)=G (2,0)=X (2,2)=X           -> C no,  M no;  col 1: C,G below, nothing above;
#                                                             row 2: X left, X,M right   -> not between
# touch C 2/4, touch M 2/4, either 3/4, between 3/4.
A = ["CCGM", "CGGM", "XGXM"]

#   row 0: M C
#   row 1: G G
#   row 2: C C
#   (1,0): (0,0)=M (2,0)=C (1,1)=G -> C yes, M yes; col 0: M below, C above -> between (reversed order)
#   (1,1): (0,1)=C (2,1)=C (1,0)=G -> C yes, M no;  col 1: C on both sides, row 1: G left only -> not
# touch C 2/2, touch M 1/2, either 2/2, between 1/2; no confusion: claim 1 fails.
B = ["MC", "GG", "CC"]

# No grokking cell at all: every share NaN.
NONE = ["CM", "XC"]

# One row: the grokking cell touches only confusion and diverged cells, yet comprehension lies to its
# left and memorization to its right further along the row -> touches 0, between 1.
FAR = ["CXGDM"]


def test_phase_counts_include_absent_phases():
    assert phase_counts(grid(A)) == {
        "comprehension": 3, "grokking": 4, "memorization": 3, "confusion": 2, "diverged": 0
    }
    assert phase_counts(grid(FAR)) == {
        "comprehension": 1, "grokking": 1, "memorization": 1, "confusion": 2, "diverged": 1
    }


def test_phase_counts_reject_unknown_labels():
    table = grid(A)
    table.loc[table.index[0], "phase"] = "grokked"
    with pytest.raises(ValueError, match="grokked"):
        phase_counts(table)


def test_neighbourhood_of_grid_a():
    assert grokking_neighbourhood(grid(A)) == {
        "n_grokking": 4, "touch_comprehension": 0.5, "touch_memorization": 0.5, "touch_either": 0.75,
        "between": 0.75,
    }


def test_between_along_a_column_either_orientation_and_not_with_the_same_phase_both_sides():
    assert grokking_neighbourhood(grid(B)) == {
        "n_grokking": 2, "touch_comprehension": 1.0, "touch_memorization": 0.5, "touch_either": 1.0,
        "between": 0.5,
    }


def test_between_needs_no_adjacency():
    assert grokking_neighbourhood(grid(FAR)) == {
        "n_grokking": 1, "touch_comprehension": 0.0, "touch_memorization": 0.0, "touch_either": 0.0,
        "between": 1.0,
    }


def test_missing_cells_are_no_neighbours():
    # (0,1) G: left (0,0) missing, right (0,2)=M, above (1,1)=C -> C and M touched; row 0 has nothing on
    # the left, column 1 nothing below -> not between.
    assert grokking_neighbourhood(grid([".GM", "XCX"])) == {
        "n_grokking": 1, "touch_comprehension": 1.0, "touch_memorization": 1.0, "touch_either": 1.0,
        "between": 0.0,
    }


def test_no_grokking_gives_nan_shares():
    result = grokking_neighbourhood(grid(NONE))
    assert result["n_grokking"] == 0
    for key in ("touch_comprehension", "touch_memorization", "touch_either", "between"):
        assert math.isnan(result[key])


def test_several_seeds_in_one_table_are_refused_by_the_single_diagram_function():
    with pytest.raises(ValueError, match="share an"):
        grokking_neighbourhood(pd.concat([grid(A), grid(A, data_seed=42)]))


def test_claims_table_one_row_per_combination():
    seeds = pd.concat([grid(A, data_seed=41), grid(B, data_seed=42, model_seed=102, activation="relu")])
    table = claims_table({"toy_cls_seeds": seeds, "toy_cls": grid(A)}, mnist=set())
    assert list(table["diagram"]) == ["toy_cls_seeds[d41,m101,tanh]", "toy_cls_seeds[d42,m102,relu]", "toy_cls"]
    assert list(table["cells"]) == [12, 6, 12]
    assert list(table["n_comprehension"]) == [3, 3, 3]
    assert list(table["n_grokking"]) == [4, 2, 4]
    assert list(table["n_memorization"]) == [3, 1, 3]
    assert list(table["n_confusion"]) == [2, 0, 2]
    assert list(table["n_diverged"]) == [0, 0, 0]
    assert list(table["claim1_four_phases"]) == [True, False, True]
    assert list(table["grokking_touch_comprehension"]) == [0.5, 1.0, 0.5]
    assert list(table["grokking_touch_memorization"]) == [0.5, 0.5, 0.5]
    assert list(table["grokking_touch_either"]) == [0.75, 1.0, 0.75]
    assert list(table["grokking_between"]) == [0.75, 0.5, 0.75]
    assert table["claim3_grokking_appears"].isna().all()


def test_claim3_only_for_mnist_diagrams():
    table = claims_table({"mnist": grid(A), "mnist_flat": grid(NONE), "toy": grid(A)}, mnist={"mnist", "mnist_flat"})
    claim3 = table.set_index("diagram")["claim3_grokking_appears"]
    assert str(table["claim3_grokking_appears"].dtype) == "boolean"
    assert bool(claim3["mnist"]) is True
    assert bool(claim3["mnist_flat"]) is False
    assert pd.isna(claim3["toy"])
    row = table.set_index("diagram").loc["mnist_flat"]
    assert row["n_grokking"] == 0 and math.isnan(row["grokking_between"])


def test_markdown_carries_the_numbers():
    table = claims_table({"toy": grid(A), "mnist_flat": grid(NONE), "seeds": pd.concat(
        [grid(B, data_seed=41), grid(FAR, data_seed=42)])}, mnist={"mnist_flat"})
    text = claims_markdown(table)
    assert text.startswith("# ")
    for claim in ("Claim 1: four phases appear", "Claim 2: grokking lies between comprehension and memorization",
                  "Claim 3: grokking appears on MNIST"):
        assert claim in text
    lines = text.splitlines()
    assert "| toy | 12 | 3 | 4 | 3 | 2 | 0 | yes | 50% | 50% | 75% | 75% |  |" in lines
    assert "| mnist_flat | 4 | 2 | 0 | 1 | 1 | 0 | no | n/a | n/a | n/a | n/a | no |" in lines
    assert "| seeds[d41,m101,tanh] | 6 | 3 | 2 | 1 | 0 | 0 | no | 100% | 50% | 100% | 50% |  |" in lines
    assert "| seeds[d42,m101,tanh] | 5 | 1 | 1 | 1 | 2 | 1 | yes | 0% | 0% | 0% | 100% |  |" in lines
    # header and separator have as many columns as the rows
    header = next(i for i, line in enumerate(lines) if line.startswith("| diagram"))
    widths = {lines[k].count("|") for k in range(header, len(lines))}
    assert widths == {14}
