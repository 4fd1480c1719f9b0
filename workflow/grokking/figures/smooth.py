"""A study's discrete diagram at its budget beside the smooth one at its extended budget (report
Figs. 3-5); ``outline`` draws a red rectangle around an lr x wd range (Fig. 5's original grid)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    study = spec["studies"][0]
    return {"discrete": [phases_table(study)], "smooth": [phases_table(study, extended=True)],
            "changes": [f"results/{study}/phase_changes.csv"]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"gap": studies[spec["studies"][0]]["grokking_gap"], "title": spec.get("title", ""),
            "outline": spec.get("outline")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.plots import smooth_figure

    discrete, smooth, changes = (pd.read_csv(files[k][0]) for k in ("discrete", "smooth", "changes"))
    smooth_figure(discrete, smooth, changes, options["gap"], pdf, png, title=options["title"],
                  outline=options["outline"])


def diagrams(spec: dict, studies: Studies) -> dict[str, str]:
    study = spec["studies"][0]
    return {study: phases_table(study), f"{study}_extended": phases_table(study, extended=True)}


KIND = FigureKind("smooth", inputs, options, draw, caption="smooth_diagram.rst",
                  category="Smooth phase diagrams", n_studies=1, keys=("outline",), diagrams=diagrams)
