"""Claims of the [Re] report (paper 000), tested on its phase diagrams (Figs. 1 and 2).

Its three claims, as the report words them: the training may happen in four phases (claim 1);
grokking lies between comprehension and memorization (claim 2); grokking is not restricted to toy
algorithmic data (claim 3, MNIST). Each is judged per diagram with ``grokking.claims``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from grokking.claims import grokking_neighbourhood, phase_counts
from grokking.ledger import Claim, Inputs
from grokking.ledger.verdicts import Measured, at_least, is_true
from grokking.phases import PHASES


def phases_size(phases: pd.DataFrame) -> str:
    """'21 lr x 21 wd, 1e5 steps, data seed 42, model seed 102'."""
    seeds = lambda column: ", ".join(str(v) for v in sorted(phases[column].unique())) if column in phases else "?"
    budgets = ", ".join(f"{b:g}" for b in sorted(phases["budget"].unique()))
    return (f"{phases['lr'].nunique()} lr x {phases['wd'].nunique()} wd, {budgets} steps, data seed "
            f"{seeds('data_seed')}, model seed {seeds('model_seed')}")


def _panel(files: Inputs, index: int) -> pd.DataFrame:
    return pd.read_csv(files["phases"][index])


def four_phases(index: int):
    """Measure: how many of the four phases the index-th diagram of the figure holds."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        phases = _panel(files, index)
        counts = phase_counts(phases)
        present = [p for p in PHASES if counts[p] > 0]
        text = ", ".join(f"{p} {counts[p]}" for p in PHASES) + f" cells: {len(present)} of 4 phases"
        return Measured(len(present), text, phases_size(phases), n=len(phases))
    return measure


def grokking_between(index: int):
    """Measure: the share of grokking cells with comprehension on one side and memorization on the
    other along their row or column (``claims.grokking_neighbourhood``)."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        phases = _panel(files, index)
        near = grokking_neighbourhood(phases)
        share = near["between"]
        text = ("no grokking cell" if math.isnan(share) else
                f"{100 * share:.0f} % of {near['n_grokking']} grokking cells between; "
                f"{100 * near['touch_either']:.0f} % touch either phase")
        return Measured(share, text, phases_size(phases), n=near["n_grokking"])
    return measure


def grokking_appears(index: int):
    """Measure: whether the index-th diagram has a grokking cell (1) or not (0)."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        phases = _panel(files, index)
        n = phase_counts(phases)["grokking"]
        return Measured(float(n > 0), f"{n} of {len(phases)} cells grok", phases_size(phases), n=len(phases))
    return measure


_FOUR = "phases present in the diagram (of comprehension, grokking, memorization, confusion)"
_BETWEEN = "share of grokking cells with comprehension and memorization on opposite sides along lr or wd"

CLAIMS = (
    Claim("000-toy-cls-four-phases", "000", "Fig. 1 (claim 1)",
          "Training on the toy addition task (classification) falls into four phases depending on the "
          "decoder lr and weight decay.", _FOUR, "4", "fig1_toy_phases", four_phases(0), at_least(4)),
    Claim("000-toy-regr-four-phases", "000", "Fig. 1 (claim 1)",
          "The same holds for the toy addition task as regression.", _FOUR, "4", "fig1_toy_phases",
          four_phases(1), at_least(4)),
    Claim("000-toy-between", "000", "Fig. 1 (claim 2)",
          "Grokking lies between comprehension and memorization (toy classification).", _BETWEEN,
          "all (by eye)", "fig1_toy_phases", grokking_between(0), at_least(0.5)),
    Claim("000-mnist-grokking", "000", "Fig. 2 (claim 3)",
          "Grokking is not restricted to algorithmic data: it appears on MNIST.",
          "grokking cells in the MNIST diagram", "present", "fig2_mnist_phases", grokking_appears(0),
          is_true()),
    Claim("000-mnist-four-phases", "000", "Fig. 2 (claims 1, 3)",
          "All four phases appear on MNIST too.", _FOUR, "4", "fig2_mnist_phases", four_phases(0),
          at_least(4)),
    Claim("000-mnist-between", "000", "Fig. 2 (claim 2)",
          "On MNIST, grokking is sandwiched between comprehension and memorization.", _BETWEEN,
          "all (by eye)", "fig2_mnist_phases", grokking_between(0), at_least(0.5)),
)
