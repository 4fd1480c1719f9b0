"""Table of one or more studies' threshold steps, final accuracies and phases, one row per (lr, wd)
point, seeds aggregated: the numbers behind a curves figure."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table
from grokking.figures.curves import figure_labels
from grokking.figures.curves import options as curve_options


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """``cells_<i>`` (final accuracies) and ``phases_<i>`` (phases) of the i-th study."""
    files: Inputs = {}
    for i, study in enumerate(spec["studies"]):
        files[f"cells_{i}"] = [f"results/{study}/cells.csv"]
        files[f"phases_{i}"] = [phases_table(study)]
    return files


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"title": spec.get("title", ""), "labels": figure_labels(spec),
            "settings": curve_options(spec, studies)["studies"]}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.curve_plots import curve_table, curve_table_figure, read_cells

    studies = [(label, read_cells(files[f"cells_{i}"][0]), read_cells(files[f"phases_{i}"][0]))
               for i, label in enumerate(options["labels"])]
    curve_table_figure(curve_table(studies, options["settings"]), pdf, png, title=options["title"])


KIND = FigureKind("curve_table", inputs, options, draw, caption="curve_table.rst", category="Training curves",
                  keys=("labels",))
