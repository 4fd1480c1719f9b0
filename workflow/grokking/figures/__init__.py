"""Figure kinds: one module each, registered here by name.

A kind says which result files a figure of it reads (from the figure's config entry and the studies
it names), which settings change its drawing, and how to draw. Snakemake makes one plotting rule per
kind from this registry (rules/figures.smk) and every figure runs the one ``plot`` verb, so a new
kind is a module here, a caption in workflow/report/ and a figure entry in the config.

Nothing here imports matplotlib or torch at import time: config validation reads the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# What a kind's functions are given about the run: every study's settings, and the history files of
# a study's shards (the shard layout is the workflow's, computed once in rules/common.smk).
Studies = dict[str, dict[str, Any]]
Histories = Callable[[str], list[str]]
Inputs = dict[str, list[str]]


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure.

    - ``inputs(spec, studies, histories)``: named lists of result files the figure reads;
    - ``options(spec, studies)``: JSON-able settings of the drawing (a change reruns the figure);
    - ``draw(inputs, options, pdf, png)``: reads the files and writes both images atomically;
    - ``diagrams(spec, studies)``: diagram name -> phases table, for the claims summary (empty for
      figures that are not phase diagrams);
    - ``keys``: the config keys only this kind takes; ``n_studies``: how many studies it draws
      (None: any number); ``caption`` and ``category``: its place in ``snakemake --report``;
    - ``tables``: suffixes of the files ``draw`` writes beside the PNG besides the images (e.g.
      ``("csv", "md")``): the plotting rule declares them as outputs too.
    """

    name: str
    inputs: Callable[[dict, Studies, Histories], Inputs]
    options: Callable[[dict, Studies], dict[str, Any]]
    draw: Callable[[Inputs, dict[str, Any], str, str], None]
    caption: str
    category: str
    n_studies: int | None = None
    keys: tuple[str, ...] = ()
    diagrams: Callable[[dict, Studies], dict[str, str]] = field(default=lambda spec, studies: {})
    tables: tuple[str, ...] = ()


def phases_table(study: str, extended: bool = False) -> str:
    """Where a study's phases table lives."""
    return f"results/{study}/phases{'_extended' if extended else ''}.csv"


def study_label(name: str, studies: Studies) -> str:
    """Panel title: the study and what it trains (the figure adds grid size and budget)."""
    from grokking.tasks import task_of

    return f"{name}: {task_of(studies[name]).label(studies[name])}"


def _registry() -> dict[str, FigureKind]:
    from grokking.figures import (batch_grid, change_curves, change_table, correlations, curve_table, curves, dynamics,
                                  facets, landscape, lu_maps, phases, representations, response, robustness,
                                  scale_sweep, smooth, trajectories, weight_kde)

    kinds = (phases.KIND, smooth.KIND, dynamics.KIND, facets.KIND, trajectories.KIND, robustness.KIND,
             curves.KIND, curve_table.KIND, landscape.KIND, batch_grid.KIND, correlations.KIND,
             representations.KIND, weight_kde.KIND, response.KIND,
             change_table.KIND, change_curves.KIND, scale_sweep.KIND, lu_maps.KIND)
    return {kind.name: kind for kind in kinds}


KINDS = _registry()


def figure_kind(name: str) -> FigureKind:
    """The registered kind ``name``; an unknown name is an error that lists the known ones."""
    if name not in KINDS:
        raise KeyError(f"unknown figure kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]
