"""Token embeddings against steps, one panel per cell, titled with its phase (report appendix C,
Figs. 11-12); ``max_step`` draws the first steps only."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    study = spec["studies"][0]
    return {"histories": histories(study), "phases": [phases_table(study)]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"max_step": spec.get("max_step"), "title": spec.get("title", "")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.appendix_plots import trajectory_figure
    from grokking.io import load_histories

    trajectory_figure(load_histories(files["histories"]), pd.read_csv(files["phases"][0]), pdf, png,
                      max_step=options["max_step"], title=options["title"])


KIND = FigureKind("trajectories", inputs, options, draw, caption="trajectories.rst",
                  category="Embedding trajectories", n_studies=1, keys=("max_step",))
