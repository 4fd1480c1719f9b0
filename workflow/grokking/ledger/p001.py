"""Claims of the course report on modular arithmetic (paper 001): training fraction and batch size
(Figs. 1-3), three operands (Fig. 8), p = 113 with 5 % of the equations (Fig. 9), MLP and LSTM
(Figs. 4-5), optimizers and regularizers on division (Figs. 6-7).

The report shows curves and states what it sees in words; each claim here turns one of those
sentences into a number read from the figure's own files (``cells_<i>``, ``histories_<i>``,
``phases_<i>``) and options. T values are the first evaluated step at which an accuracy reaches the
study's threshold (95 %); a run that never reached it has none.

The rank-correlation helpers here are shared with the other papers' modules.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from grokking.delays import GROKKING_DELAY, correlations
from grokking.ledger import Claim, Inputs
from grokking.ledger.verdicts import Measured, at_least, at_most, is_true, sign

Measure = Callable[[Inputs, dict[str, Any]], Measured]


# ------------------------------------------------------------------ shared helpers
def steps(values: pd.Series) -> np.ndarray:
    """Threshold steps as floats, NaN where the threshold was never reached."""
    return pd.Series(values).astype("Float64").astype(float).to_numpy()


def step_text(value: Any) -> str:
    """'2,200' or 'not reached' (NaN, None or pandas' NA)."""
    return "not reached" if value is None or pd.isna(value) else f"{float(value):,.0f}"


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float, int]:
    """Spearman's rho of ``x`` with ``y`` and its percentile-bootstrap 95 % interval over the pairs
    (``grokking.delays.correlations``: 2,000 resamples, seeded). NaN where either does not vary or
    there are fewer than 3 pairs."""
    table = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    row = correlations(table, ("x",), target="y").iloc[0]
    value = lambda key: float(row[key]) if pd.notna(row[key]) else math.nan  # noqa: E731
    return value("spearman"), value("spearman_low"), value("spearman_high"), int(row["n"])


def rho_text(rho: float, low: float, high: float, n: int) -> str:
    """'rho -0.87 (95 % CI -1.00 to -0.61), 9 runs', or why there is none."""
    if math.isnan(rho):
        return f"rho not computable ({n} runs; one side does not vary)"
    return f"rho {rho:+.2f} (95 % CI {low:+.2f} to {high:+.2f}), {n} runs"


def lateness(cells: pd.DataFrame) -> np.ndarray:
    """How late each run generalized: its T_val, and for a run that never did, a value after every
    reached T_val (the budget + 1), ordered among such runs by final test accuracy (higher: earlier).
    Its ranks order the runs from best to worst generalization without dropping those that never
    generalized, which would hide the very effect a claim is about."""
    budget = float(cells["budget"].max())
    never = budget + 1.0 + (1.0 - cells["final_val_acc"].astype(float).to_numpy())
    t_val = steps(cells["t_val"])
    return np.where(np.isnan(t_val), never, t_val)


def listed(values: Sequence[Any]) -> str:
    """'0.3 / 0.5 / 0.7' for numbers, 'a / b' for texts, each value once in order."""
    return " / ".join(dict.fromkeys(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values))


def settings_summary(settings: Sequence[dict[str, Any]]) -> str:
    """'x + y mod 41, alpha 0.3 / 0.5 / 0.7, batch 64': what a figure's studies train."""
    parts = [listed([s["task"] for s in settings if "task" in s])]
    fractions = [s["train_fraction"] for s in settings if "train_fraction" in s]
    if fractions:
        parts.append(f"alpha {listed(fractions)}")
    batches = ["full" if s["batch_size"] == 0 else s["batch_size"] for s in settings if "batch_size" in s]
    if batches:
        parts.append(f"batch {listed(batches)}")
    return ", ".join(p for p in parts if p)


def runs_size(settings: Sequence[dict[str, Any]], cells: Sequence[pd.DataFrame]) -> str:
    """'x + y mod 41, alpha 0.3 / 0.5 / 0.7, batch 64; 9 runs (3 seeds each), 30,000 steps': the
    budget read from the runs themselves."""
    runs = sum(len(c) for c in cells)
    seeds = max((c["model_seed"].nunique() for c in cells if len(c)), default=0)
    budgets = ", ".join(f"{b:,}" for b in sorted({int(b) for c in cells for b in c["budget"]})) or "?"
    return (f"{settings_summary(settings)}; {runs} run{'s' if runs != 1 else ''} ({seeds} seed"
            f"{'s' if seeds != 1 else ''} each), {budgets} steps")


def study_cells(files: Inputs, settings: Sequence[dict[str, Any]]) -> list[pd.DataFrame]:
    """The cells table of each study of a curves or curve_table figure."""
    from grokking.curve_plots import read_cells

    return [read_cells(files[f"cells_{i}"][0]) for i in range(len(settings))]


# ------------------------------------------------------------------ Figs. 1-3: training fraction
def fraction_lateness(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: Spearman's rho of the training fraction with how late each run reaches 95 % test
    accuracy (``lateness``) over every run of the figure, with a bootstrap interval. Negative: more
    data, earlier (or better) generalization."""
    settings = options["studies"]
    cells = study_cells(files, settings)
    runs = pd.concat([c.assign(alpha=float(s["train_fraction"])) for c, s in zip(cells, settings)], ignore_index=True)
    rho, low, high, n = rank_correlation(runs["alpha"], lateness(runs))
    per = "; ".join(f"alpha {s['train_fraction']:g}: T_val {', '.join(step_text(t) for t in steps(c['t_val']))}, "
                    f"final test acc {c['final_val_acc'].mean():.2f}" for c, s in zip(cells, settings))
    return Measured(rho, f"{rho_text(rho, low, high, n)} ({per})", runs_size(settings, cells), low=low, high=high,
                    n=n)


def validation_lags_training(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: among the runs that fitted their training set, the share whose test accuracy reached
    95 % at least ``GROKKING_DELAY`` steps after the training accuracy did, or never."""
    settings = options["studies"]
    cells = pd.concat(study_cells(files, settings), ignore_index=True)
    t_train, t_val = steps(cells["t_train"]), steps(cells["t_val"])
    fitted = ~np.isnan(t_train)
    lags = np.isnan(t_val[fitted]) | (t_val[fitted] - t_train[fitted] >= GROKKING_DELAY)
    size = runs_size(settings, [cells])
    if not fitted.any():
        return Measured(math.nan, f"no run of {len(cells)} fitted its training set", size, n=0)
    delays = ", ".join(step_text(d) for d in (t_val - t_train)[fitted])
    return Measured(float(lags.mean()), f"{int(lags.sum())} of {int(fitted.sum())} runs lag by >= "
                    f"{GROKKING_DELAY:,} steps (T_val - T_train: {delays})", size, n=int(fitted.sum()))


# ------------------------------------------------------------------ Figs. 8-9: single studies
def three_operands_best(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the best final accuracy, training or test, of any run (the claim: neither set is
    learnt)."""
    settings = options["studies"]
    cells = pd.concat(study_cells(files, settings), ignore_index=True)
    train, test = cells["final_train_acc"].astype(float), cells["final_val_acc"].astype(float)
    best = float(max(train.max(), test.max()))
    return Measured(best, f"best final accuracy {best:.3f} (train {listed(train.round(3))}, test "
                    f"{listed(test.round(3))})", runs_size(settings, [cells]), n=len(cells))


def memorizes_without_generalizing(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the share of runs that fitted the training set (T_train) but never reached 95 % test
    accuracy within the budget: memorization without the delayed generalization."""
    settings = options["studies"]
    cells = pd.concat(study_cells(files, settings), ignore_index=True)
    t_train, t_val = steps(cells["t_train"]), steps(cells["t_val"])
    stuck = ~np.isnan(t_train) & np.isnan(t_val)
    text = (f"{int(stuck.sum())} of {len(cells)} runs memorized without generalizing (T_train "
            f"{', '.join(step_text(t) for t in t_train)}; final test acc {listed(cells['final_val_acc'].round(3))})")
    return Measured(float(stuck.mean()) if len(cells) else math.nan, text, runs_size(settings, [cells]),
                    n=len(cells))


# ------------------------------------------------------------------ Figs. 4-5: architectures (table)
def architecture_groks(architecture: str) -> Measure:
    """Measure: 1 when some run of the studies training ``architecture`` (their task label ends in
    ', MLP' / ', LSTM') ends in the grokking phase, 0 when none does; NaN when the figure has none."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        from grokking.curve_plots import read_cells

        settings = options["settings"]
        chosen = [i for i, s in enumerate(settings) if s.get("task", "").endswith(f", {architecture}")]
        if not chosen:
            return Measured(math.nan, f"no {architecture} study in this figure", settings_summary(settings))
        phases = pd.concat([read_cells(files[f"phases_{i}"][0]) for i in chosen], ignore_index=True)
        cells = pd.concat([read_cells(files[f"cells_{i}"][0]) for i in chosen], ignore_index=True)
        counts = phases["phase"].value_counts()
        text = (f"{architecture} runs (wd {listed(phases['wd'])}): "
                + ", ".join(f"{phase} {n}" for phase, n in counts.items())
                + f"; final test acc {cells['final_val_acc'].min():.3f}-{cells['final_val_acc'].max():.3f}")
        return Measured(float(counts.get("grokking", 0) > 0), text,
                        runs_size([settings[i] for i in chosen], [cells]), n=len(phases))
    return measure


# ------------------------------------------------------------------ Figs. 6-7: division
def best_optimizer_accuracy(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the highest final test accuracy (mean over seeds) of any row of the optimizer table,
    one row per study and (lr, wd)."""
    from grokking.curve_plots import curve_table, read_cells

    settings = options["settings"]
    studies = [(label, read_cells(files[f"cells_{i}"][0]), read_cells(files[f"phases_{i}"][0]))
               for i, label in enumerate(options["labels"])]
    table = curve_table(studies, settings)
    text = "; ".join(f"{r.label} (lr {r.lr:g}) {r.val_acc:.3f}" for r in table.itertuples())
    best = float(table["val_acc"].max())
    return Measured(best, f"best final test acc {best:.3f} ({text})",
                    runs_size(settings, [c for _, c, _ in studies]), n=len(table))


def regularizers_gain(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the smallest gain in best test accuracy (Fig. 7's y axis: the running maximum, mean
    over seeds) of a regularized study over the figure's first study, the unregularized baseline."""
    from grokking.io import load_histories

    settings, labels = options["studies"], options["labels"]
    cells = study_cells(files, settings)
    best = []
    for i, table in enumerate(cells):
        histories = load_histories(files[f"histories_{i}"])
        best.append(float(np.mean([float(np.max(np.asarray(histories[c]["val_acc"], dtype=float)))
                                   for c in table["cell_id"]])))
    gains = [b - best[0] for b in best[1:]]
    size = runs_size(settings, cells)
    text = f"baseline '{labels[0]}' {best[0]:.3f}; " + "; ".join(
        f"'{label}' {b:.3f} ({g:+.3f})" for label, b, g in zip(labels[1:], best[1:], gains))
    if not gains:
        return Measured(math.nan, f"only the baseline: {text}", size)
    return Measured(float(min(gains)), f"smallest gain {min(gains):+.3f} ({text})", size, n=len(gains))


_LATE = "Spearman rho of alpha with how late test accuracy reaches 95 % (never: last, by final test accuracy)"

CLAIMS = (
    Claim("001-fraction-speed", "001", "Figs. 1-2, section 2.1",
          "On x + y mod 41 the transformer generalizes faster when the training set is larger.", _LATE,
          "faster with more data", "p001_fig1_2_fractions", fraction_lateness, sign(-1)),
    Claim("001-test-lags-train", "001", "Figs. 1-2, section 2.1",
          "Test accuracy improves consistently later than training accuracy.",
          f"share of runs that fitted the training set whose T_val comes >= {GROKKING_DELAY:,} steps after "
          "T_train, or never", "consistently", "p001_fig1_2_fractions", validation_lags_training, at_least(1.0)),
    Claim("001-batch128-fraction", "001", "Fig. 3, section 2.1",
          "With batch 128 too, a larger training set generalizes better.", _LATE, "better with more data",
          "p001_fig3_batch128", fraction_lateness, sign(-1)),
    Claim("001-three-operands-fail", "001", "Fig. 8, section 4",
          "On x1 + x2 + x3 mod 41 at alpha 0.8 the transformer learns neither the training nor the test set.",
          "best final train or test accuracy of any run", "low on both", "p001_fig8_three_operands",
          three_operands_best, at_most(0.95)),
    Claim("001-p113-no-grokking", "001", "Fig. 9, section 5.3",
          "x + y mod 113 with 5 % of the equations memorizes but does not grok.",
          "share of runs that reach T_train but never T_val", "no grokking", "p001_fig9_p113",
          memorizes_without_generalizing, at_least(1.0)),
    Claim("001-mlp-groks", "001", "Fig. 4, section 2.2",
          "An MLP groks x / y mod p too (Fig. 4: \"Grokking in MLP\").",
          "some MLP run (weight decay 1 or the sweep) ends in the grokking phase", "groks (caption)",
          "p001_architectures_table", architecture_groks("MLP"), is_true()),
    Claim("001-lstm-groks", "001", "Fig. 5, section 2.2",
          "An LSTM groks x / y mod p too (Fig. 5: \"Grokking in LSTM\").",
          "some LSTM run (weight decay 1 or the sweep) ends in the grokking phase", "groks (caption)",
          "p001_architectures_table", architecture_groks("LSTM"), is_true()),
    Claim("001-division-low", "001", "Fig. 6, section 3",
          "Within 3e4 updates, x / y mod 41 stays at low test accuracy whatever the optimizer.",
          "highest final test accuracy of any optimizer (mean over seeds)", "low", "p001_fig6_optimizers_table",
          best_optimizer_accuracy, at_most(0.5)),
    Claim("001-regularizers-help", "001", "Fig. 7, section 3",
          "Every regularization method (dropout, weight decay) improves the test accuracy on x / y mod 41.",
          "smallest gain in best test accuracy of a regularizer over no regularization", "improves",
          "p001_fig7_regularizers", regularizers_gain, at_least(0.05)),
)
