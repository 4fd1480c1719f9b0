"""Omnigrok's LU figure for MNIST: final train and test accuracy over the initialization scale
(the weight norm, held there when the studies constrain it) x the training-set size, one study per
size (a sweep of subset_size), and accuracy against alpha at a few sizes."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    return {f"cells_{i}": [f"results/{study}/cells.csv"] for i, study in enumerate(spec["studies"])}


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"title": spec.get("title", ""), "settings": settings_text([studies[s] for s in spec["studies"]]),
            "held": bool(studies[spec["studies"][0]]["constrain_norm"]),
            "studies": [{"subset_size": int(studies[s]["subset_size"]), "init_scale": float(studies[s]["init_scale"])}
                        for s in spec["studies"]]}


def settings_text(studies: list[dict[str, Any]]) -> str:
    """What the runs shared (their first study's): norm held or free, batch, budget, dtype."""
    first = studies[0]
    norm = "norm held at its initial value" if first["constrain_norm"] else "norm free"
    return (f"{norm}, batch {first['batch_size']} (smaller subsets: all of it), {first['budget']:,} steps, "
            f"{first['dtype']}, {len(studies)} training-set sizes")


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.ablation_plots import lu_figure, lu_table
    from grokking.curve_plots import read_cells

    cells = [read_cells(files[f"cells_{i}"][0]) for i in range(len(options["studies"]))]
    lu_figure(lu_table(cells, options["studies"]), pdf, png, title=options["title"], settings=options["settings"],
              held=options["held"])


KIND = FigureKind("lu_maps", inputs, options, draw, caption="lu_maps.rst", category="MNIST ablations")
