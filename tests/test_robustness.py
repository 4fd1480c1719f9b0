"""Agreement of the phase across seed pairs on a hand-made 2 x 2 grid, and its figure."""

import pandas as pd
import pytest

from grokking.robustness import phase_agreement, robustness_figure

# (lr, wd) -> phases of seed pairs 0, 1, 2
CELLS = {
    (0.001, 0.1): ["comprehension"] * 3,                          # unanimous: comprehension 3/3
    (0.001, 1.0): ["grokking", "memorization", "grokking"],       # grokking 2/3
    (0.01, 0.1): ["confusion", "memorization", "grokking"],       # three-way tie -> grokking 1/3
    (0.01, 1.0): ["confusion!", "confusion", "memorization!"],   # "!": the run diverged -> confusion 2/3
}


def seeds_table(activation: str = "relu") -> pd.DataFrame:
    rows = [
        {"lr": lr, "wd": wd, "data_seed": 40 + s, "model_seed": 100 + s, "activation": activation,
         "phase": p.rstrip("!"), "diverged": p.endswith("!")}
        for (lr, wd), phases in CELLS.items() for s, p in enumerate(phases)
    ]
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)  # reversed: output must still be sorted


def test_majority_agreement_and_counts():
    out = phase_agreement(seeds_table())
    assert list(out.columns) == ["lr", "wd", "runs", "majority_phase", "agree", "n_comprehension", "n_grokking",
                                 "n_memorization", "n_confusion", "n_diverged", "diverged"]
    assert list(zip(out["lr"], out["wd"])) == [(0.001, 0.1), (0.001, 1.0), (0.01, 0.1), (0.01, 1.0)]
    assert list(out["runs"]) == [3, 3, 3, 3]
    assert list(out["majority_phase"]) == ["comprehension", "grokking", "grokking", "confusion"]
    assert list(out["agree"]) == [3, 2, 1, 2]
    assert list(out["n_comprehension"]) == [3, 0, 0, 0]
    assert list(out["n_grokking"]) == [0, 2, 1, 0]
    assert list(out["n_memorization"]) == [0, 1, 1, 1]
    assert list(out["n_confusion"]) == [0, 0, 1, 2]
    assert list(out["n_diverged"]) == [0, 0, 0, 2]  # counted in their phase as well
    assert list(out["diverged"]) == [False, False, False, True]


@pytest.mark.parametrize(
    "phases,expected",
    [
        (["memorization", "comprehension"], "comprehension"),
        (["confusion", "memorization"], "memorization"),
        (["confusion", "grokking"], "grokking"),
        (["confusion", "grokking", "grokking", "confusion"], "grokking"),
    ],
)
def test_ties_follow_the_fixed_phase_order(phases, expected):
    table = pd.DataFrame({"lr": 0.1, "wd": 1.0, "data_seed": range(len(phases)), "model_seed": 7, "phase": phases,
                          "diverged": False})
    out = phase_agreement(table)
    assert out["majority_phase"].tolist() == [expected]
    assert out["agree"].tolist() == [len(phases) // 2]


def test_two_activations_in_one_table_are_refused():
    with pytest.raises(ValueError, match="activation"):
        phase_agreement(pd.concat([seeds_table("relu"), seeds_table("tanh")]))


def test_figure_writes_pdf_and_png(tmp_path):
    pdf, png = tmp_path / "fig" / "robustness.pdf", tmp_path / "fig" / "robustness.png"
    robustness_figure([("toy, relu", phase_agreement(seeds_table()))], pdf, png, title="toy")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["robustness.pdf", "robustness.png"]  # no temp left
