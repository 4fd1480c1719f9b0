"""T_train, T_val and final accuracies against the initialization scale (Omnigrok: a large init
makes MNIST grok, a small one generalizes at once), one line per study."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies
from grokking.figures.curves import figure_labels

STUDY_KEYS = ("subset_size", "batch_size", "init_scale", "budget", "threshold")


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    return {f"cells_{i}": [f"results/{study}/cells.csv"] for i, study in enumerate(spec["studies"])}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"title": spec.get("title", ""), "labels": figure_labels(spec),
            "studies": [{key: studies[s][key] for key in STUDY_KEYS} for s in spec["studies"]]}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.ablation_plots import scale_sweep_figure, scale_table
    from grokking.curve_plots import read_cells

    tables = [scale_table(read_cells(files[f"cells_{i}"][0]), study) for i, study in enumerate(options["studies"])]
    scale_sweep_figure(tables, options["labels"], options["studies"], pdf, png, title=options["title"])


KIND = FigureKind("scale_sweep", inputs, options, draw, caption="scale_sweep.rst", category="MNIST ablations",
                  keys=("labels",))
