"""Discrete phase diagrams side by side, one panel per study (report Figs. 1 and 2)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table, study_label


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    return {"phases": [phases_table(s) for s in spec["studies"]]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"titles": [study_label(s, studies) for s in spec["studies"]], "title": spec.get("title", "")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.plots import phase_diagrams

    tables = [pd.read_csv(p) for p in files["phases"]]
    phase_diagrams(tables, options["titles"], pdf, png, suptitle=options["title"])


def diagrams(spec: dict, studies: Studies) -> dict[str, str]:
    return {s: phases_table(s) for s in spec["studies"]}


KIND = FigureKind("phases", inputs, options, draw, caption="phase_diagram.rst", category="Phase diagrams",
                  diagrams=diagrams)
