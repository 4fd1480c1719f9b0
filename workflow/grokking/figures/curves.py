"""Training curves of one or more studies against steps: accuracy, loss, parameter and attention
norms, seeds of each (lr, wd) point drawn as their mean and min-max band."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Histories, Inputs, Studies

# The study settings a curves figure states (those a study's task lacks are left out).
STUDY_KEYS = ("threshold", "budget", "p", "operation", "train_fraction", "batch_size", "loss")


def inputs(spec: dict, studies: Studies, histories: Histories) -> Inputs:
    """``histories_<i>`` and ``cells_<i>`` of the i-th study: names the plot verb's NAME=PATH takes."""
    files: Inputs = {}
    for i, study in enumerate(spec["studies"]):
        files[f"histories_{i}"] = histories(study)
        files[f"cells_{i}"] = [f"results/{study}/cells.csv"]
    return files


def figure_labels(spec: dict) -> list[str]:
    """The entry's ``labels``, one per study, else the study names (config validation checks the count)."""
    return list(spec.get("labels", spec["studies"]))


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"title": spec.get("title", ""), "labels": figure_labels(spec),
            "panels": list(spec.get("panels", ["accuracy", "loss"])), "marks": spec.get("marks", False),
            "studies": [{**{k: studies[s][k] for k in STUDY_KEYS if k in studies[s]}, "task": task_label(s, studies),
                         "clock": task_clock(s, studies)} for s in spec["studies"]]}


def task_label(study: str, studies: Studies) -> str:
    """What the study trains, as its task names it (e.g. 'x1 + x2 + x3 mod 41')."""
    from grokking.tasks import task_of

    return task_of(studies[study]).label(studies[study])


def task_clock(study: str, studies: Studies) -> str:
    """What the study's budget and threshold steps count: optimizer steps, or epochs (parity)."""
    from grokking.tasks import task_of

    return task_of(studies[study]).clock


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.curve_plots import curves_figure, read_cells
    from grokking.io import load_histories

    studies = [(load_histories(files[f"histories_{i}"]), read_cells(files[f"cells_{i}"][0]))
               for i in range(len(options["studies"]))]
    curves_figure(studies, options["labels"], options["studies"], pdf, png, panels=options["panels"],
                  marks=options["marks"], title=options["title"])


KIND = FigureKind("curves", inputs, options, draw, caption="curves.rst", category="Training curves",
                  keys=("labels", "panels", "marks"))
