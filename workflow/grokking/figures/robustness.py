"""Beyond the report: each cell's majority phase over a study's seed pairs and how many agree."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    return {"phases": [phases_table(s) for s in spec["studies"]]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"titles": [studies[s]["objective"] for s in spec["studies"]], "title": spec.get("title", "")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.robustness import phase_agreement, robustness_figure

    panels = [(title, phase_agreement(pd.read_csv(path)))
              for path, title in zip(files["phases"], options["titles"])]
    robustness_figure(panels, pdf, png, title=options["title"])


def diagrams(spec: dict, studies: Studies) -> dict[str, str]:
    return {s: phases_table(s) for s in spec["studies"]}


KIND = FigureKind("robustness", inputs, options, draw, caption="robustness.rst", category="Beyond the report",
                  diagrams=diagrams)
