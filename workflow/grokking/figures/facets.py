"""One study's phase diagrams, one panel per value of ``rows`` x ``cols`` (seeds, activations; report
appendices A-B, Figs. 7-10)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    return {"phases": [phases_table(spec["studies"][0])]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"rows": spec.get("rows"), "cols": spec.get("cols"), "title": spec.get("title", "")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.appendix_plots import facet_figure

    facet_figure(pd.read_csv(files["phases"][0]), options["rows"], options["cols"], pdf, png,
                 title=options["title"])


def diagrams(spec: dict, studies: Studies) -> dict[str, str]:
    return {spec["studies"][0]: phases_table(spec["studies"][0])}


KIND = FigureKind("facets", inputs, options, draw, caption="facets.rst", category="Seeds and activations",
                  n_studies=1, keys=("rows", "cols"), diagrams=diagrams)
