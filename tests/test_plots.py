"""Phase diagrams in the report's orientation, with diverged cells marked on top of their phase."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grokking.phases import PHASES
from grokking.plots import DiagramGrid, phase_diagrams, phase_panel, smooth_figure

LRS = [1e-5, 1e-4, 1e-3]
WDS = [0.0, 5.0]


def table() -> pd.DataFrame:
    """3 lr x 2 wd; the phase depends on the cell so that a transposed drawing shows."""
    rows = []
    for i, lr in enumerate(LRS):
        for j, wd in enumerate(WDS):
            phase = PHASES[(i + 2 * j) % 4]
            rows.append({"cell_id": f"c{i}{j}", "lr": lr, "wd": wd, "budget": 1000, "phase": phase,
                         "t_train": 10.0 if phase != "confusion" else np.nan,
                         "t_val": 20.0 if phase in ("comprehension", "grokking") else np.nan,
                         "diverged": (lr, wd) == (1e-3, 5.0)})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # row order must not matter


def test_learning_rate_runs_along_x_and_weight_decay_down_from_zero():
    fig, ax = plt.subplots()
    phase_panel(ax, table(), "t")
    image = ax.images[0].get_array()
    assert image.shape == (len(WDS), len(LRS))  # rows: weight decays, columns: learning rates
    expected = [[(i + 2 * j) % 4 for i in range(len(LRS))] for j in range(len(WDS))]
    assert image.tolist() == expected
    assert ax.get_xlabel().startswith("learning rate") and ax.get_ylabel().startswith("weight decay")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1e-05", "0.0001", "0.001"]
    bottom, top = ax.get_ylim()
    assert top < bottom  # row 0 (weight decay 0) at the top, as in the report
    plt.close(fig)


def test_diverged_cells_get_a_mark_not_a_color():
    fig, ax = plt.subplots()
    marked = phase_panel(ax, table(), "t")
    assert marked == 1
    (dots,) = ax.collections
    assert dots.get_offsets().tolist() == [[2.0, 1.0]]  # x = lr 1e-3 (third), y = wd 5 (second row)
    plt.close(fig)


def test_grid_positions_follow_sorted_values():
    grid = DiagramGrid.of(table())
    assert grid.position(1e-4, 0.0) == (1, 0)
    assert grid.position(1e-3, 5.0) == (2, 1)


def test_diagram_figures_write_files(tmp_path):
    phases = table()
    phase_diagrams([phases, phases], ["a", "b"], tmp_path / "p.pdf", tmp_path / "p.png")
    smooth_figure(phases, phases, phases.iloc[:0], 1000, tmp_path / "s.pdf", tmp_path / "s.png",
                  outline={"lr": [1e-5, 1e-4], "wd": [0.0, 5.0]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pdf", "p.png", "s.pdf", "s.png"]
