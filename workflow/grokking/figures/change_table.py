"""003 Table 3 as a computed table: one row per cell of the studies, each one change from the base
row (the first), with our phase beside the report's verdict. Writes the table's CSV and Markdown
beside its image (``results/figures/<name>.csv``, ``.md``)."""

from __future__ import annotations

from typing import Any

from grokking.figures import FigureKind, Inputs, Studies
from grokking.figures.curve_table import inputs  # cells_<i> and phases_<i> of the i-th study

# The study settings a row is read against (its own axes come from the cells table).
STUDY_KEYS = ("subset_size", "batch_size", "init_scale", "constrain_norm", "threshold", "budget", "grokking_gap")




def rows(spec: dict, studies: Studies) -> list[dict[str, Any]]:
    """Each configured change with the cell it describes: the cells of the studies in order, each
    study's in its grid's order (config validation checks there is one change per cell)."""
    from grokking.grid import study_cells

    cells = [(i, study, cid) for i, study in enumerate(spec["studies"])
             for cid in study_cells(studies[study])["cell_id"]]
    return [{"study": i, "study_name": study, "cell_id": cid, **change}
            for (i, study, cid), change in zip(cells, spec["changes"], strict=True)]


def options(spec: dict, studies: Studies) -> dict[str, Any]:
    return {"title": spec.get("title", ""), "rows": rows(spec, studies),
            "studies": [{key: studies[s][key] for key in STUDY_KEYS} for s in spec["studies"]]}


def read(files: Inputs, options: dict[str, Any]):
    """The change table of a figure's files and options."""
    from grokking.ablation_plots import change_table
    from grokking.curve_plots import read_cells

    n = len(options["studies"])
    return change_table(options["rows"], [read_cells(files[f"cells_{i}"][0]) for i in range(n)],
                        [read_cells(files[f"phases_{i}"][0]) for i in range(n)], options["studies"])


def draw(files: Inputs, options: dict[str, Any], pdf: str, png: str) -> None:
    from grokking.ablation_plots import change_table_figure, write_table_files

    table = read(files, options)
    write_table_files(table, png, options["title"])
    change_table_figure(table, pdf, png, title=options["title"])


KIND = FigureKind("change_table", inputs, options, draw, caption="change_table.rst", category="MNIST ablations",
                  keys=("changes",), tables=("csv", "md"))
