"""Accuracy curves of one study's cells beside the map of another study's T_train (report Fig. 6)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies, phases_table


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """Curves: the first study's shard histories; map: the second's phases at its largest budget."""
    curves, mapped = spec["studies"]
    return {"histories": histories(curves), "cells": [f"results/{curves}/cells.csv"],
            "map": [phases_table(mapped, extended="extended_budget" in studies[mapped])]}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"threshold": studies[spec["studies"][0]]["threshold"], "title": spec.get("title", "")}


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    import pandas as pd

    from grokking.io import load_histories
    from grokking.plots import dynamics_figure

    dynamics_figure(load_histories(files["histories"]), pd.read_csv(files["cells"][0]),
                    pd.read_csv(files["map"][0]), options["threshold"], pdf, png, title=options["title"])


KIND = FigureKind("dynamics", inputs, options, draw, caption="dynamics.rst", category="Training dynamics",
                  n_studies=2)
