"""Claims of the course blog on (n, k)-parity (paper 002): memorization then generalization (Fig. 1),
representations that cluster only after memorization (Fig. 2), weights that gather at zero (Fig. 3),
the spectral norm's two bends (Fig. 4), and its two hypotheses on raising weight decay once the
training set is fitted and on flipped training labels.

The blog states its hypotheses without results, so their ``paper_value`` says so; the figures are
described in words only. Times are epochs; "memorized" and "generalized" are the blog's own
definitions: training (resp. test) accuracy reached 1 (the studies' threshold), T_train (resp. T_val).
Every measure here reads all runs of the figure's study, not only the one a snapshot figure draws.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd

from grokking.ledger import Claim, Inputs
from grokking.ledger.p001 import lateness, listed, rank_correlation, rho_text, step_text, steps
from grokking.ledger.verdicts import Measured, at_least, at_most, is_true, sign

Measure = Callable[[Inputs, dict[str, Any]], Measured]

# Silhouette bands of Kaufman & Rousseeuw: below 0.25 no substantial structure, above 0.5 a reasonable one.
NO_CLUSTERS, CLUSTERS = 0.25, 0.5


# ------------------------------------------------------------------ runs of a curves figure
def _runs(files: Inputs) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Cells and histories of the figure's (single) parity study."""
    from grokking.curve_plots import read_cells
    from grokking.io import load_histories

    return read_cells(files["cells_0"][0]), load_histories(files["histories_0"])


def curves_size(options: dict[str, Any], cells: pd.DataFrame) -> str:
    """'(50, 2)-parity, width 500, batch 32, hinge loss; 5 runs, 1,000 epochs'."""
    study = options["studies"][0]
    batch = "full batch" if study.get("batch_size") == 0 else f"batch {study.get('batch_size', '?')}"
    loss = f", {study['loss']} loss" if "loss" in study else ""
    budgets = ", ".join(f"{int(b):,}" for b in sorted(cells["budget"].unique()))
    return f"{study.get('task', 'parity')}, {batch}{loss}; {len(cells)} runs, {budgets} epochs"


def memorize_then_generalize(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the share of runs that memorize first and generalize at least twice as late
    (T_val >= 2 T_train): a delay that is a multiple of the time to fit, not a lag of a few epochs."""
    cells, _ = _runs(files)
    t_train, t_val = steps(cells["t_train"]), steps(cells["t_val"])
    groks = ~np.isnan(t_train) & ~np.isnan(t_val) & (t_val >= 2 * t_train)
    pairs = ", ".join(f"{step_text(a)}/{step_text(b)}" for a, b in zip(t_train, t_val))
    return Measured(float(groks.mean()) if len(cells) else math.nan,
                    f"{int(groks.sum())} of {len(cells)} runs (T_train/T_val epochs: {pairs})",
                    curves_size(options, cells), n=len(cells))


def _index_at(history: dict[str, Any], step: float) -> int:
    """Index of the first evaluation at or after ``step`` (the last one if none)."""
    evaluated = np.asarray(history["step"], dtype=float)
    return int(min(np.searchsorted(evaluated, step), len(evaluated) - 1))


class Segments(NamedTuple):
    """A run's spectral norm around T_train and T_val: its change per unit of time before T_train,
    between T_train and T_val, and after T_val (over as much time as between, or to the end), on
    linear epochs and on log(1 + epoch); and its relative fall between T_train and T_val."""

    rates: tuple[float, float, float]
    log_rates: tuple[float, float, float]
    drop: float


def _spectral_segments(history: dict[str, Any], t_train: float, t_val: float) -> Segments:
    epochs = np.asarray(history["step"], dtype=float)
    norm = np.asarray(history["spectral_norm"], dtype=float)
    i0, i1, i2 = 0, _index_at(history, t_train), _index_at(history, t_val)

    def rates(time: np.ndarray, i3: int) -> tuple[float, float, float]:
        def rate(a: int, b: int) -> float:
            return float((norm[b] - norm[a]) / (time[b] - time[a])) if time[b] > time[a] else math.nan
        return rate(i0, i1), rate(i1, i2), rate(i2, i3)

    log_end = math.expm1(2 * math.log1p(t_val) - math.log1p(t_train))  # as long after T_val on the log axis
    return Segments(rates(epochs, _index_at(history, t_val + (t_val - t_train))),
                    rates(np.log1p(epochs), _index_at(history, log_end)), float((norm[i1] - norm[i2]) / norm[i1]))


def _spectral_runs(files: Inputs) -> tuple[pd.DataFrame, list[Segments]]:
    """Each run that memorized and generalized, with its spectral-norm segments."""
    cells, histories = _runs(files)
    t_train, t_val = steps(cells["t_train"]), steps(cells["t_val"])
    both = ~np.isnan(t_train) & ~np.isnan(t_val) & (t_val > t_train)
    segments = [_spectral_segments(histories[c], a, b) for c, a, b in
                zip(cells["cell_id"][both], t_train[both], t_val[both])]
    return cells, segments


def bend_ratio(before: float, between: float, after: float) -> float:
    """|rate between| / max(|rate before|, |rate after|); 0 where the norm does not fall between, NaN
    where neither side has a length."""
    if math.isnan(between) or (math.isnan(before) and math.isnan(after)):
        return math.nan
    if between >= 0:
        return 0.0
    side = float(np.nanmax([abs(before), abs(after)]))
    return math.inf if side == 0 else abs(between) / side


def spectral_bends(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: median over runs of how much faster the spectral norm falls between T_train and T_val
    than on either side (``bend_ratio``), time read on a log epoch axis as the figure draws it. Two
    bends at memorization and generalization with a sharp decline between make it well above 1; a
    curve that falls as fast before memorization, or goes on falling after generalization, keeps it
    near or below 1. Bends depend on the axis: on a log axis memorization at epoch ~15 of 1,000
    takes a third of the width, on a linear one it hugs the edge, where no bend could be read (the
    blog does not say which it drew). The ratio per linear epoch is stated beside it."""
    cells, segments = _spectral_runs(files)
    size = curves_size(options, cells)
    ratios = [r for r in (bend_ratio(*s.log_rates) for s in segments) if not math.isnan(r)]
    if not ratios:
        return Measured(math.nan, f"no run of {len(cells)} memorized and then generalized", size, n=0)
    linear = [r for r in (bend_ratio(*s.rates) for s in segments) if not math.isnan(r)]
    rates = "; ".join(" / ".join(f"{r:+.3f}" for r in s.log_rates) for s in segments)
    value = float(np.median(ratios))
    return Measured(value, f"{value:.2f}x (median of {len(ratios)} runs; change per unit of log(1 + epoch) before "
                    f"T_train / between / after T_val: {rates}; per linear epoch the ratio is "
                    f"{np.median(linear) if linear else math.nan:.2f}x)", size, n=len(ratios))


def spectral_decline(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: median over runs of the relative fall of the spectral norm from T_train to T_val."""
    cells, segments = _spectral_runs(files)
    size = curves_size(options, cells)
    if not segments:
        return Measured(math.nan, f"no run of {len(cells)} memorized and then generalized", size, n=0)
    drops = [s.drop for s in segments]
    value = float(np.median(drops))
    return Measured(value, f"{100 * value:.0f} % (median of {len(drops)} runs: {', '.join(f'{d:.2f}' for d in drops)})",
                    size, n=len(drops))


# ------------------------------------------------------------------ snapshots: Figs. 2 and 3
def _snapshot_runs(files: Inputs) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Cells and histories (with their weight snapshots) of a snapshot figure's study."""
    from grokking.curve_plots import read_cells
    from grokking.io import load_histories

    return read_cells(files["cells"][0]), load_histories(files["histories"])


def _snapshot_size(options: dict[str, Any], cells: pd.DataFrame, epochs: list[int]) -> str:
    """What the study trains (the figure's own line), how many runs and which snapshots."""
    return f"{options['study']}; {len(cells)} runs, snapshots at epochs {', '.join(map(str, epochs))}"


def _drawn(history: dict[str, Any], options: dict[str, Any]) -> tuple[list[int], np.ndarray]:
    """Positions and epochs of the snapshots the figure draws."""
    from grokking.parity_analysis import snapshot_indices

    snapshots = history["snapshots"]
    order = snapshot_indices(snapshots, options.get("epochs"))
    return order, np.asarray(snapshots["epoch"], dtype=int)[order]


def silhouette_at(stage: str) -> Measure:
    """Measure: mean silhouette of the 2^k parity groups in the hidden space of the test inputs
    (``parity_analysis.cluster_score``, the number in Fig. 2's titles) over the runs, at ``stage``:
    "memorized", the first drawn snapshot at or after T_train and before T_val; "generalized", the
    last drawn snapshot, if it is at or after T_val. Runs without such a snapshot are left out."""
    if stage not in ("memorized", "generalized"):
        raise ValueError(f"silhouette_at: stage 'memorized' or 'generalized', not {stage!r}")

    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        from grokking import parity_analysis as pa
        from grokking.io import load_torch

        cells, histories = _snapshot_runs(files)
        datasets = load_torch(files["dataset"][0])
        k = int(options["k"])
        scores, picked, drawn = [], [], []
        for cell in cells.itertuples():
            history = histories[cell.cell_id]
            order, epochs = _drawn(history, options)
            drawn = list(epochs)
            t_train, t_val = (math.nan if pd.isna(t) else float(t) for t in (cell.t_train, cell.t_val))
            if stage == "memorized":
                after_fit = [j for j, e in enumerate(epochs) if e >= t_train and not e >= t_val]  # NaN: never
                j = after_fit[0] if after_fit else None
            else:
                j = len(epochs) - 1 if len(epochs) and epochs[-1] >= t_val else None
            if j is None:
                continue
            x = datasets[int(cell.data_seed)]["x_test"]
            snapshots = history["snapshots"]
            at = order[j]
            hidden = pa.hidden_representations(x, snapshots["hidden.weight"][at], snapshots["hidden.bias"][at])
            scores.append(pa.cluster_score(hidden, pa.parity_groups(x, k)))
            picked.append(int(epochs[j]))
        size = _snapshot_size(options, cells, drawn)
        if not scores:
            return Measured(math.nan, f"no run of {len(cells)} has a drawn snapshot {stage}", size, n=0)
        value = float(np.mean(scores))
        return Measured(value, f"silhouette {value:.2f} (mean of {len(scores)} runs at epoch(s) {listed(picked)}: "
                        f"{', '.join(f'{s:.2f}' for s in scores)})", size, n=len(scores))
    return measure


def weights_near_zero(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: mean over runs of the share of hidden weights with |w| < ``NEAR_ZERO`` at the last
    drawn snapshot (Fig. 3's right panel), beside the same share at the first."""
    from grokking.parity_analysis import NEAR_ZERO, weight_stats

    cells, histories = _snapshot_runs(files)
    first, last, drawn = [], [], []
    for cell in cells.itertuples():
        history = histories[cell.cell_id]
        order, epochs = _drawn(history, options)
        drawn = list(epochs)
        share = weight_stats(np.asarray(history["snapshots"]["hidden.weight"], dtype=float)[order])["near_zero"]
        first.append(float(share[0]))
        last.append(float(share[-1]))
    size = _snapshot_size(options, cells, drawn)
    if not last:
        return Measured(math.nan, "no run", size, n=0)
    value = float(np.mean(last))
    return Measured(value, f"{100 * value:.0f} % of the weights within {NEAR_ZERO:g} of 0 at epoch {drawn[-1]:,} "
                    f"(from {100 * np.mean(first):.0f} % at epoch {drawn[0]:,}; mean of {len(last)} runs)", size,
                    n=len(last))


# ------------------------------------------------------------------ Hypotheses 1 and 2 (response figures)
def _lines(files: Inputs, options: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """Every line of the response figure: (name, cells with ``x`` = the axis value), as it draws them."""
    from grokking.curve_plots import read_cells
    from grokking.parity_analysis import response_lines

    lines = []
    for i, label in enumerate(options["labels"]):
        for name, cells in response_lines(read_cells(files[f"cells_{i}"][0]), options["axis"]):
            lines.append((f"{label}, {name}" if name else label, cells))
    return lines


def _response_size(options: dict[str, Any], lines: list[tuple[str, pd.DataFrame]]) -> str:
    """'label_noise 0 / 0.05 / ... / 0.3 x 2 lines, 5 seeds per point, 1,000 epochs'."""
    cells = pd.concat([c for _, c in lines], ignore_index=True)
    counts = [int(n) for _, c in lines for n in c.groupby("x").size()]
    seeds = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    budgets = ", ".join(f"{int(b):,}" for b in sorted(cells["budget"].unique()))
    plural = "s" if len(lines) > 1 else ""
    return (f"{options['axis']} {listed(sorted(cells['x'].unique()))} x {len(lines)} line{plural}, {seeds} seeds "
            f"per point, {budgets} epochs")


def speed_trend(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: Spearman's rho of the axis with how late each run generalizes (``lateness``), per
    line of the figure over the values below its generalization threshold (the hypotheses' first
    half; the threshold is their second), then averaged over lines. Its interval spans every line's
    bootstrap interval, so the sign rule holds only when every line agrees. A line with a single
    value below its threshold has no trend to measure and is left out (its text says so)."""
    from grokking.parity_analysis import generalization_threshold

    axis = options["axis"]
    lines = _lines(files, options)
    rhos, lows, highs, used, parts = [], [], [], 0, []
    for name, cells in lines:
        threshold = generalization_threshold(cells, axis)
        below = cells if threshold is None else cells[cells["x"] < threshold]
        rho, low, high, n = rank_correlation(below["x"], lateness(below))
        mean_t = below.groupby("x")["t_val"].mean()
        parts.append(f"{name}: {rho_text(rho, low, high, n)}; mean T_val "
                     + ", ".join(f"{x:g}: {step_text(t)}" for x, t in mean_t.items()))
        if not math.isnan(rho):
            rhos.append(rho)
            lows.append(low)
            highs.append(high)
            used += n
    size = _response_size(options, lines)
    if not rhos:
        return Measured(math.nan, "; ".join(parts), size, n=used)
    value = float(np.mean(rhos))
    return Measured(value, f"rho {value:+.2f} (" + " | ".join(parts) + ")", size, low=float(min(lows)),
                    high=float(max(highs)), n=used)


def threshold_inside(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: 1 when every line of the figure has a generalization threshold inside the swept
    range (no seed generalizes at it or above, some seed does below it), 0 otherwise."""
    from grokking.figures.response import threshold_text
    from grokking.parity_analysis import generalization_threshold

    axis = options["axis"]
    lines = _lines(files, options)
    inside = []
    for _, cells in lines:
        threshold = generalization_threshold(cells, axis)
        inside.append(threshold is not None and threshold > cells["x"].min())
    text = "; ".join(f"{name}: {threshold_text(cells, axis)}" for name, cells in lines)
    return Measured(float(all(inside)) if lines else math.nan, text, _response_size(options, lines),
                    n=sum(len(c) for _, c in lines))


_NOT_REPORTED = "hypothesis (no result reported)"

CLAIMS = (
    Claim("002-memorize-then-generalize", "002", "Fig. 1",
          "With lr 0.1 and weight decay 0.01 the network first memorizes the training set and generalizes "
          "much later.", "share of runs with T_val >= 2 T_train", "qualitative (mean of 5 runs)",
          "p002_fig1_loss_accuracy", memorize_then_generalize, at_least(0.8)),
    Claim("002-memorized-unclustered", "002", "Fig. 2",
          "Once memorized, the hidden representations show no discernible clustering.",
          "mean silhouette of the 2^k groups in the hidden space at the first drawn snapshot after T_train",
          "no clusters (t-SNE, by eye)", "p002_fig2_tsne", silhouette_at("memorized"), at_most(NO_CLUSTERS)),
    Claim("002-generalized-clusters", "002", "Fig. 2",
          "After generalization the representations split into 2^k clusters by the first k coordinates.",
          "mean silhouette of the 2^k groups at the last drawn snapshot (after T_val)", "2^k clusters (by eye)",
          "p002_fig2_tsne", silhouette_at("generalized"), at_least(CLUSTERS)),
    Claim("002-weights-coalesce", "002", "Fig. 3",
          "As training goes on the hidden weights coalesce around zero: the final circuit is very sparse.",
          "share of hidden weights with |w| < 0.01 at the last drawn snapshot", "very sparse (KDE, by eye)",
          "p002_fig3_weight_kde", weights_near_zero, at_least(0.5)),
    Claim("002-spectral-two-bends", "002", "Fig. 4",
          "The spectral norm has two inflection points, at about memorization and generalization.",
          "median |fall between T_train and T_val| / max(|fall before|, |fall after|) per log epoch",
          "two inflection points", "p002_fig4_spectral_norm", spectral_bends, at_least(2.0, unit="x")),
    Claim("002-spectral-declines", "002", "Fig. 4",
          "Between memorization and generalization the spectral norm sharply declines.",
          "median relative fall of the spectral norm from T_train to T_val", "sharp decline",
          "p002_fig4_spectral_norm", spectral_decline, at_least(0.2)),
    Claim("002-h1-faster", "002", "Hypothesis 1",
          "Raising the weight decay once the training set is memorized makes the model generalize faster.",
          "Spearman rho of wd_after with T_val below the threshold (every line)", _NOT_REPORTED,
          "p002_hypothesis1_weight_decay", speed_trend, sign(-1)),
    Claim("002-h1-threshold", "002", "Hypothesis 1",
          "Beyond some weight decay the model cannot generalize at all.",
          "a wd_after inside the swept range from which no seed generalizes", _NOT_REPORTED,
          "p002_hypothesis1_weight_decay", threshold_inside, is_true()),
    Claim("002-h2-slower", "002", "Hypothesis 2",
          "Flipping a larger share p_t of the training labels makes the model generalize more slowly.",
          "Spearman rho of p_t with T_val below the threshold (every line)", _NOT_REPORTED,
          "p002_hypothesis2_label_noise", speed_trend, sign(+1)),
    Claim("002-h2-threshold", "002", "Hypothesis 2",
          "Beyond some share of flipped labels the model cannot generalize at all.",
          "a p_t inside the swept range from which no seed generalizes (every line)", _NOT_REPORTED,
          "p002_hypothesis2_label_noise", threshold_inside, is_true()),
)
