"""The report's claims, measured on phase diagrams rather than asserted by eye.

- Claim 1: all four phases (comprehension, grokking, memorization, confusion) appear in a diagram.
- Claim 2: grokking lies between comprehension and memorization.
- Claim 3: grokking appears on MNIST.

A phase diagram is the lr x wd grid of one (data_seed, model_seed, activation) combination: rows are
the sorted unique learning rates, columns the sorted unique weight decays of that combination. Every
measure here is computed per combination, so a table holding several seeds never mixes their cells.
The functions are pure (pandas in, numbers out) so they can be tested on hand-made grids.
"""

from __future__ import annotations

import math
from typing import Iterator

import pandas as pd

from grokking.phases import PHASES, check_phase_labels

COMBINATION = ("data_seed", "model_seed", "activation")
COLUMNS = (
    "diagram", "cells", "n_comprehension", "n_grokking", "n_memorization", "n_confusion", "n_diverged",
    "claim1_four_phases", "grokking_touch_comprehension", "grokking_touch_memorization",
    "grokking_touch_either", "grokking_between", "claim3_grokking_appears",
)


def phase_counts(phases: pd.DataFrame) -> dict[str, int]:
    """Number of cells in each phase (0 when absent), and under ``diverged`` the number of cells whose
    loss became NaN/Inf (they are counted in their phase too).

    Unknown phase labels raise: a misspelt label would otherwise vanish from every claim silently.
    """
    check_phase_labels(phases)
    counts = phases["phase"].value_counts()
    return {**{p: int(counts.get(p, 0)) for p in PHASES}, "diverged": int(phases["diverged"].sum())}


def _grid(phases: pd.DataFrame) -> dict[tuple[int, int], str]:
    """Phase at each (row, column) index of the lr x wd grid; one cell per (lr, wd) is required."""
    if phases.duplicated(["lr", "wd"]).any():
        raise ValueError("several cells share an (lr, wd): split the table per seed/activation first")
    row = {v: i for i, v in enumerate(sorted(phases["lr"].unique()))}
    col = {v: j for j, v in enumerate(sorted(phases["wd"].unique()))}
    return {(row[lr], col[wd]): p for lr, wd, p in zip(phases["lr"], phases["wd"], phases["phase"])}


def _share(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def grokking_neighbourhood(phases: pd.DataFrame) -> dict:
    """Where the grokking cells of ONE diagram lie relative to comprehension and memorization.

    Grid: rows = sorted unique lr, columns = sorted unique wd. The 4-neighbours of cell (i, j) are
    (i-1, j), (i+1, j), (i, j-1), (i, j+1) when they exist (missing cells have no phase). Returns

    - ``n_grokking``: number of grokking cells;
    - ``touch_comprehension``: share of grokking cells with at least one comprehension 4-neighbour;
    - ``touch_memorization``: share of grokking cells with at least one memorization 4-neighbour;
    - ``touch_either``: share of grokking cells with a comprehension or a memorization 4-neighbour;
    - ``between``: share of grokking cells (i, j) that lie between the two phases along a grid line:
      in column j (same wd, varying lr) there is a comprehension cell at some row < i and a
      memorization cell at some row > i, or memorization below and comprehension above; or the same
      holds in row i (same lr, varying wd) with columns < j and > j. The cells need not be adjacent
      and other phases may lie in between; both must be strictly on opposite sides of the cell.

    Shares are floats in [0, 1], NaN when there is no grokking cell (the claim is then untestable,
    not false).
    """
    grid = _grid(phases)
    grokking = [cell for cell, p in grid.items() if p == "grokking"]
    touch_c = touch_m = touch_e = between = 0
    for i, j in grokking:
        near = {grid.get(n) for n in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))}
        touch_c += "comprehension" in near
        touch_m += "memorization" in near
        touch_e += bool(near & {"comprehension", "memorization"})
        between += _between(grid, i, j)
    n = len(grokking)
    return {
        "n_grokking": n,
        "touch_comprehension": _share(touch_c, n),
        "touch_memorization": _share(touch_m, n),
        "touch_either": _share(touch_e, n),
        "between": _share(between, n),
    }


def _between(grid: dict[tuple[int, int], str], i: int, j: int) -> bool:
    """Comprehension strictly on one side of (i, j) and memorization strictly on the other, along
    its column (varying lr) or its row (varying wd)."""
    column = [(r, p) for (r, c), p in grid.items() if c == j]
    row = [(c, p) for (r, c), p in grid.items() if r == i]
    for line, at in ((column, i), (row, j)):
        before = {p for k, p in line if k < at}
        after = {p for k, p in line if k > at}
        if ("comprehension" in before and "memorization" in after) or (
            "memorization" in before and "comprehension" in after
        ):
            return True
    return False


def _combinations(name: str, phases: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """One (diagram name, table) per seed/activation combination; the bare name when there is one."""
    keys = [c for c in COMBINATION if c in phases.columns]
    if not keys or phases[keys].drop_duplicates().shape[0] <= 1:
        yield name, phases
        return
    for values, group in phases.groupby(keys, sort=True, dropna=False):
        label = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        parts = []
        if "data_seed" in label:
            parts.append(f"d{label['data_seed']}")
        if "model_seed" in label:
            parts.append(f"m{label['model_seed']}")
        if "activation" in label:
            parts.append(str(label["activation"]))
        yield f"{name}[{','.join(parts)}]", group


def claims_table(diagrams: dict[str, pd.DataFrame], mnist: set[str]) -> pd.DataFrame:
    """One row per diagram (per seed/activation combination where a table holds several).

    ``claim3_grokking_appears`` is True/False (at least one grokking cell) for diagrams whose key is
    in ``mnist`` and NA otherwise: Claim 3 is about MNIST only.
    """
    rows = []
    for name, table in diagrams.items():
        for label, phases in _combinations(name, table):
            counts = phase_counts(phases)
            near = grokking_neighbourhood(phases)
            rows.append({
                "diagram": label,
                "cells": len(phases),
                **{f"n_{p}": counts[p] for p in (*PHASES, "diverged")},
                "claim1_four_phases": all(counts[p] > 0 for p in PHASES),
                "grokking_touch_comprehension": near["touch_comprehension"],
                "grokking_touch_memorization": near["touch_memorization"],
                "grokking_touch_either": near["touch_either"],
                "grokking_between": near["between"],
                "claim3_grokking_appears": counts["grokking"] > 0 if name in mnist else pd.NA,
            })
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out = out.astype({"diagram": str, "cells": int, **{f"n_{p}": int for p in (*PHASES, "diverged")},
                      "claim1_four_phases": bool, **{c: float for c in COLUMNS if c.startswith("grokking_")}})
    out["claim3_grokking_appears"] = out["claim3_grokking_appears"].astype("boolean")
    return out


def _percent(value) -> str:
    return "n/a" if pd.isna(value) else f"{100 * float(value):.0f}%"


def _yes_no(value) -> str:
    return "" if pd.isna(value) else ("yes" if bool(value) else "no")


def claims_markdown(table: pd.DataFrame) -> str:
    """Markdown summary of ``claims_table``: what each claim means and one line per diagram.

    Every number is read from ``table``; shares are percentages without decimals, "n/a" where a
    diagram has no grokking cell, and Claim 3 is blank for non-MNIST diagrams.
    """
    lines = [
        "# Claims checked on the phase diagrams",
        "",
        "- **Claim 1: four phases appear.** A diagram supports it when comprehension, grokking, "
        "memorization and confusion each occupy at least one cell.",
        "- **Claim 2: grokking lies between comprehension and memorization.** Among grokking cells: "
        "the share with a comprehension / memorization / either one among its 4 grid neighbours, "
        "and the share with comprehension on one side and memorization on the other (not necessarily "
        "adjacent) at the same weight decay or at the same learning rate.",
        "- **Claim 3: grokking appears on MNIST.** An MNIST diagram supports it when at least one "
        "cell is grokking.",
        "- **diverged** counts the cells whose loss became NaN/Inf. They are classified by the T values "
        "they reached before, as in the report (never fitted the training set: confusion; fitted it, "
        "then diverged: memorization), and are counted in that phase as well.",
        "",
        "| diagram | cells | comprehension | grokking | memorization | confusion | diverged "
        "| claim 1 | grokking touches comprehension | touches memorization | touches either "
        "| between | claim 3 |",
        "|---|" + "---:|" * 6 + ":---:|" + "---:|" * 4 + ":---:|",
    ]
    for r in table.itertuples(index=False):
        cells = [
            str(r.diagram), str(int(r.cells)),
            *(str(int(getattr(r, f"n_{p}"))) for p in (*PHASES, "diverged")),
            _yes_no(r.claim1_four_phases),
            _percent(r.grokking_touch_comprehension), _percent(r.grokking_touch_memorization),
            _percent(r.grokking_touch_either), _percent(r.grokking_between),
            _yes_no(r.claim3_grokking_appears),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
