"""The curves of every row of 003 Table 3: train and test accuracy and loss against steps (log axis),
one pair of panels per change, the base row's test accuracy in gray beside every other (003 Figs. 9,
13-21, which compare one change with the base)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies
from grokking.figures import change_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """The change table's files and ``histories_<i>`` of the i-th study."""
    files = change_table.inputs(spec, studies, histories)
    for i, study in enumerate(spec["studies"]):
        files[f"histories_{i}"] = histories(study)
    return files


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.ablation_plots import change_curves_figure
    from grokking.io import load_histories

    table = change_table.read(files, options)
    by_study = [load_histories(files[f"histories_{i}"]) for i in range(len(options["studies"]))]
    histories = [by_study[row["study"]][row["cell_id"]] for row in options["rows"]]
    change_curves_figure(table, histories, pdf, png, title=options["title"])


KIND = FigureKind("change_curves", inputs, change_table.options, draw, caption="change_curves.rst",
                  category="MNIST ablations", keys=("changes",))
