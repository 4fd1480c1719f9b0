"""Claims of "Explaining grokking" (paper 003): the transformer studies of section 3 and the MNIST
changes of section 4 (Table 3).

Runs are classed by the report's rule (``grokking.delays``): grokking when T_val - T_train exceeds
1000 steps, comprehension below, confusion when a threshold is never reached.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from grokking.delays import GROKKING_DELAY, classify, comprehension_band, correlations
from grokking.ledger import Claim, Inputs
from grokking.ledger.verdicts import Measured, at_least, at_most, is_true, sign, within

Measure = Callable[[Inputs, dict[str, Any]], Measured]


# ------------------------------------------------------------------ runs of the delay figures
def _runs(files: Inputs, options: dict[str, Any]) -> pd.DataFrame:
    from grokking.figures.batch_grid import read_runs

    return read_runs(files, options)


def runs_size(runs: pd.DataFrame) -> str:
    """'54 runs: p 23, 47, 97, batch 8, 32, 128, 1e4 steps'."""
    listed = lambda column: ", ".join(f"{v:g}" for v in sorted(runs[column].astype(float).unique()))  # noqa: E731
    return (f"{len(runs)} runs of x / y mod p: p {listed('p')}, batch {listed('batch_size')}, "
            f"budget {listed('budget')} steps")


def correlation(name: str) -> Measure:
    """Measure: Pearson's r of hyperparameter ``name`` with the delay in epochs (the report's Table 1
    quantity) over the runs that have a delay, with a bootstrap 95 % interval."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        runs = _runs(files, options)
        row = correlations(runs, (name,)).iloc[0]
        r = float(row["pearson"]) if pd.notna(row["pearson"]) else math.nan
        text = (f"r {r:+.3f} (95 % CI {row['pearson_low']:+.2f} to {row['pearson_high']:+.2f}), {row['n']} runs "
                f"with a delay" if not math.isnan(r) else f"not computable: {row['n']} runs with a delay, values "
                f"{', '.join(f'{v:g}' for v in row['values'])}")
        return Measured(r, text, runs_size(runs), low=float(row["pearson_low"]), high=float(row["pearson_high"]),
                        n=int(row["n"]))
    return measure


def batch_correlates_most(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: 1 when batch size has the largest Pearson r with the delay of the hyperparameters that
    vary, 0 when another has, NaN when batch size's r cannot be computed."""
    runs = _runs(files, options)
    table = correlations(runs).set_index("hyperparameter")
    r = table["pearson"].astype(float).dropna()
    if "batch_size" not in r.index or len(r) < 2:
        return Measured(math.nan, f"{len(r)} hyperparameters with a correlation", runs_size(runs))
    top = r.idxmax()
    text = "; ".join(f"{name} {value:+.2f}" for name, value in r.sort_values(ascending=False).items())
    return Measured(float(top == "batch_size"), text, runs_size(runs), n=int(table.loc["batch_size", "n"]))


def band_share(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the share of comprehension runs whose ratio n_train / batch lies in [20, 800]."""
    runs = _runs(files, options)
    band = comprehension_band(runs)
    low, high = band["runs"]
    text = (f"{100 * band['share_in_report_band']:.0f} % of {band['n_runs']} comprehension runs; their ratios "
            f"(10th-90th percentile) {low:.3g} to {high:.3g}" if band["n_runs"] else "no comprehension run")
    return Measured(band["share_in_report_band"], text, runs_size(runs), n=band["n_runs"])


def band_between(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: 1 when the median ratio of comprehension runs lies strictly between those of confusion
    and grokking runs (either order), 0 otherwise, NaN when a class has no run."""
    runs = _runs(files, options)
    medians = comprehension_band(runs)["median_ratio"]
    text = ", ".join(f"{name} {value:.3g}" for name, value in medians.items()) + " (median ratio per class)"
    if any(math.isnan(v) for v in medians.values()):
        return Measured(math.nan, text, runs_size(runs))
    low, high = sorted((medians["confusion"], medians["grokking"]))
    return Measured(float(low < medians["comprehension"] < high), text, runs_size(runs), n=len(runs))


def ratio_correlation(target: str) -> Measure:
    """Measure: Spearman's rho of the ratio n_train / batch with ``target`` (T_train in steps or in
    epochs) over the runs that fitted their training set, with a bootstrap interval."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        runs = _runs(files, options)
        row = correlations(runs, ("ratio",), target=target).iloc[0]
        rho = float(row["spearman"]) if pd.notna(row["spearman"]) else math.nan
        text = (f"rho {rho:+.2f} (95 % CI {row['spearman_low']:+.2f} to {row['spearman_high']:+.2f}), "
                f"{row['n']} runs" if not math.isnan(rho) else f"{row['n']} runs fitted their training set")
        return Measured(rho, text, runs_size(runs), low=float(row["spearman_low"]), high=float(row["spearman_high"]),
                        n=int(row["n"]))
    return measure


# ------------------------------------------------------------------ curves: T values and histories
def _curve_studies(files: Inputs, options: dict[str, Any]) -> list[tuple[pd.DataFrame, dict[str, dict]]]:
    """(cells, histories by cell id) of each study of a curves figure."""
    from grokking.curve_plots import read_cells
    from grokking.io import load_histories

    return [(read_cells(files[f"cells_{i}"][0]), load_histories(files[f"histories_{i}"]))
            for i in range(len(options["studies"]))]


def curves_size(files: Inputs, options: dict[str, Any], cells: Sequence[pd.DataFrame] | None = None) -> str:
    """'x / y mod 97, alpha 0.3, batch 512; 3 runs, 1e4 steps'."""
    from grokking.curve_plots import read_cells, setting_text

    cells = cells if cells is not None else [read_cells(files[f"cells_{i}"][0]) for i in range(len(options["studies"]))]
    tasks = "; ".join(dict.fromkeys(setting_text(s) for s in options["studies"]))
    budgets = ", ".join(f"{b:,}" for b in sorted({int(s["budget"]) for s in options["studies"]}))
    return f"{tasks}; {sum(len(c) for c in cells)} runs, {budgets} steps"


def _delay(cell: Any) -> float:
    """T_val - T_train, NaN where a threshold was not reached."""
    return float(cell.t_val - cell.t_train) if pd.notna(cell.t_train) and pd.notna(cell.t_val) else math.nan


def _attention(history: dict[str, Any]) -> np.ndarray:
    """Mean Frobenius norm of the last layer's Q, K and V projections at each evaluation."""
    return np.asarray(history["attn_norm"], dtype=float)[:, -1, :3].mean(axis=1)


def _at(history: dict[str, Any], step: float) -> int:
    """Index of the first evaluation at or after ``step``."""
    steps = np.asarray(history["step"], dtype=float)
    return int(min(np.searchsorted(steps, step), len(steps) - 1))


def _grokking(cell: Any) -> bool:
    return _delay(cell) > GROKKING_DELAY


def attention_peak_ratio(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: mean peak attention norm of the grokking runs over that of the other runs."""
    studies = _curve_studies(files, options)
    peaks = {True: [], False: []}
    for cells, histories in studies:
        for cell in cells.itertuples():
            peaks[_grokking(cell)].append(float(_attention(histories[cell.cell_id]).max()))
    size = curves_size(files, options, [c for c, _ in studies])
    if not peaks[True] or not peaks[False]:
        return Measured(math.nan, f"{len(peaks[True])} grokking, {len(peaks[False])} other runs", size)
    ratio = float(np.mean(peaks[True]) / np.mean(peaks[False]))
    return Measured(ratio, f"{ratio:.2f}x: peak {np.mean(peaks[True]):.3g} ({len(peaks[True])} grokking runs) vs "
                    f"{np.mean(peaks[False]):.3g} ({len(peaks[False])} others)", size, n=len(peaks[True]))


def grokking_share(test: Callable[[Any, dict[str, Any]], bool]) -> Measure:
    """Measure: the share of grokking runs of a curves figure for which ``test(cell, history)`` holds."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        studies = _curve_studies(files, options)
        tested = [test(cell, histories[cell.cell_id]) for cells, histories in studies
                  for cell in cells.itertuples() if _grokking(cell)]
        size = curves_size(files, options, [c for c, _ in studies])
        if not tested:
            return Measured(math.nan, "no grokking run", size, n=0)
        return Measured(sum(tested) / len(tested), f"{sum(tested)} of {len(tested)} grokking runs", size,
                        n=len(tested))
    return measure


def attention_rises_then_falls(cell: Any, history: dict[str, Any]) -> bool:
    """The attention norm is higher at T_val than at T_train (it grows while validation lags) and
    ends at least 5 % below its peak (it falls once the run generalizes)."""
    norm = _attention(history)
    return bool(norm[_at(history, cell.t_val)] > norm[_at(history, cell.t_train)] and norm[-1] < 0.95 * norm.max())


def validation_loss_climbs(cell: Any, history: dict[str, Any]) -> bool:
    """The validation loss climbs 5 % or more above its value at T_train before T_val."""
    loss = np.asarray(history["val_loss"], dtype=float)
    start, end = _at(history, cell.t_train), _at(history, cell.t_val)
    return bool(loss[start:end + 1].max() > 1.05 * loss[start])


def _by_wd(files: Inputs, options: dict[str, Any]) -> tuple[pd.DataFrame, list[dict[str, dict]]]:
    studies = _curve_studies(files, options)
    cells = pd.concat([c for c, _ in studies], ignore_index=True).sort_values("wd")
    histories = {k: v for _, h in studies for k, v in h.items()}
    return cells, histories


def delay_falls_with_wd(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: Spearman's rho of weight decay with T_val, a run that never reached T_val ranking
    after every run that did (its delay exceeds the budget)."""
    cells, _ = _by_wd(files, options)
    t_val = cells["t_val"].astype(float).fillna(np.inf)
    size = curves_size(files, options, [cells])
    if cells["wd"].nunique() < 2 or t_val.nunique() < 2:
        return Measured(math.nan, "weight decay or T_val does not vary", size, n=len(cells))
    rho = float(cells["wd"].rank().corr(t_val.rank()))
    text = "; ".join(f"wd {c.wd:g}: T_val {'not reached' if pd.isna(c.t_val) else f'{int(c.t_val):,}'}"
                     for c in cells.itertuples())
    return Measured(rho, f"rho {rho:+.2f} ({text})", size, n=len(cells))


def peak_spread(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: largest over smallest peak attention norm across the runs (1 = the same peak); NaN
    when a run's norm is still at its highest in the last tenth of its evaluations (no peak yet)."""
    cells, histories = _by_wd(files, options)
    norms = [_attention(histories[c]) for c in cells["cell_id"]]
    peaks = [float(n.max()) for n in norms]
    rising = [f"wd {wd:g}" for wd, n in zip(cells["wd"], norms) if n.argmax() >= 0.9 * (len(n) - 1)]
    text = "; ".join(f"wd {wd:g}: {p:.3g}" for wd, p in zip(cells["wd"], peaks))
    size = curves_size(files, options, [cells])
    if rising:
        return Measured(math.nan, f"no peak yet: {', '.join(rising)} still rising at the end ({text})", size,
                        n=len(peaks))
    return Measured(max(peaks) / min(peaks), f"{max(peaks) / min(peaks):.2f}x ({text})", size, n=len(peaks))


def delay_ratio(numerator_wd: float, denominator_wd: float) -> Measure:
    """Measure: the delay at one weight decay over the delay at another (NaN where either lacks one)."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        cells, _ = _by_wd(files, options)
        delays = {float(c.wd): _delay(c) for c in cells.itertuples()}
        size = curves_size(files, options, [cells])
        num, den = delays.get(numerator_wd, math.nan), delays.get(denominator_wd, math.nan)
        if math.isnan(num) or math.isnan(den) or den <= 0:
            text = "; ".join(f"wd {w:g}: {'no delay' if math.isnan(d) else f'{d:,.0f}'}" for w, d in delays.items())
            return Measured(math.nan, f"no ratio ({text})", size)
        return Measured(num / den, f"{num / den:.2f} (delay {num:,.0f} at wd {numerator_wd:g}, {den:,.0f} at wd "
                        f"{denominator_wd:g})", size, n=2)
    return measure


def largest_wd_stays_low(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: 1 when the run with the largest weight decay ends below 95 % on train and validation."""
    cells, _ = _by_wd(files, options)
    last = cells.iloc[-1]
    low = last["final_train_acc"] < 0.95 and last["final_val_acc"] < 0.95
    return Measured(float(low), f"wd {last['wd']:g}: final train {last['final_train_acc']:.2f}, validation "
                    f"{last['final_val_acc']:.2f}", curves_size(files, options, [cells]), n=1)


def operation_delay(operation: str) -> Measure:
    """Measure: the mean delay of the ``operation`` study of an operations table, over its seeds."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        from grokking.curve_plots import read_cells, setting_text

        index = next(i for i, s in enumerate(options["settings"]) if s.get("operation") == operation)
        cells = read_cells(files[f"cells_{index}"][0])
        delays = [d for d in (_delay(c) for c in cells.itertuples()) if not math.isnan(d)]
        settings = options["settings"][index]
        seeds = "1 seed" if len(cells) == 1 else f"{len(cells)} seeds"
        size = f"{setting_text(settings)}; {seeds}, {int(settings['budget']):,} steps"
        if not delays:
            return Measured(math.nan, f"no seed of {len(cells)} reached both thresholds", size, n=0)
        return Measured(float(np.mean(delays)), f"{np.mean(delays):,.0f} steps ({len(delays)} of {len(cells)} seeds)",
                        size, n=len(delays))
    return measure


# ------------------------------------------------------------------ loss landscapes
def landscape_ratio(statistic: str, others: tuple[str, ...] = ("comprehension",)) -> Measure:
    """Measure: the mean ``statistic`` (range or roughness) of the training-loss surface around
    grokking optima over that around the optima of the ``others`` classes (003's rule: grokking,
    comprehension, or confusion when a threshold was not reached)."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        from grokking.curve_plots import read_cells
        from grokking.io import load_torch

        values: dict[str, list[float]] = {"grokking": [], "others": []}
        points = ""
        for i, gap in enumerate(options["gaps"]):
            landscapes = load_torch(files[f"landscape_{i}"][0])
            cells = read_cells(files[f"cells_{i}"][0])
            delays = pd.Series([_delay(c) for c in cells.itertuples()]).round().astype("Int64")
            for cell, phase in zip(cells.itertuples(), classify(delays, gap)):
                group = "grokking" if phase == "grokking" else "others" if phase in others else None
                if cell.cell_id in landscapes and group:
                    values[group].append(float(landscapes[cell.cell_id]["stats"]["train_loss"][statistic]))
            for landscape in list(landscapes.values())[:1]:
                settings = landscape.get("settings", {})
                points = f"{settings.get('points', '?')}^2 points, {settings.get('normalization', '?')} directions"
        names = " or ".join(others)
        size = f"{points}; {len(values['grokking'])} grokking, {len(values['others'])} {names} optima"
        if not values["grokking"] or not values["others"]:
            return Measured(math.nan, f"needs a grokking and a {names} optimum", size)
        g, c = np.mean(values["grokking"]), np.mean(values["others"])
        return Measured(float(g / c), f"{g / c:.2f}x (train loss {statistic} {g:.3g} vs {c:.3g})", size,
                        n=len(values["grokking"]))
    return measure


# ------------------------------------------------------------------ MNIST, one change at a time
def _change_table(files: Inputs, options: dict[str, Any]) -> pd.DataFrame:
    from grokking.figures.change_table import read

    return read(files, options)


def _table_size(table: pd.DataFrame) -> str:
    budgets = ", ".join(f"{b:,}" for b in sorted(table["budget"].unique()))
    return f"MNIST MLP, {len(table)} runs (one per change), {budgets} steps, 1 seed"


def change_phase(fragment: str, phase: str) -> Measure:
    """Measure: 1 when the row whose change mentions ``fragment`` ends in ``phase``, else 0."""
    def measure(files: Inputs, options: dict[str, Any]) -> Measured:
        table = _change_table(files, options)
        row = table[table["change"].str.contains(fragment, regex=False)].iloc[0]
        steps = lambda t: "not reached" if pd.isna(t) else f"{int(t):,}"  # noqa: E731
        return Measured(float(row["phase"] == phase), f"{row['phase']} (T_train {steps(row['t_train'])}, T_val "
                        f"{steps(row['t_val'])}, test acc {row['final_test_acc']:.2f})", _table_size(table), n=1)
    return measure


def table3_agreement(files: Inputs, options: dict[str, Any]) -> Measured:
    """Measure: the share of Table 3's rows whose grokked? matches the report's."""
    table = _change_table(files, options)
    judged = table[table["agrees"].notna()]
    agree = int(judged["agrees"].astype(bool).sum())
    differ = ", ".join(judged.loc[~judged["agrees"].astype(bool), "change"].str.split(" \\(|:").str[0])
    text = f"{agree} of {len(judged)} rows agree" + (f"; differ: {differ}" if differ else "")
    return Measured(agree / len(judged) if len(judged) else math.nan, text, _table_size(table), n=len(judged))


_GRID = "p003_table2_fig4_batch_size_x_training_size"
_CORR = "p003_table1_fig3_correlations"
_R = "Pearson r with the delay in epochs (bootstrap 95 % CI)"

CLAIMS = (
    Claim("003-division-delay", "003", "Fig. 2, section 3",
          "x / y mod 97 at a 30/70 split groks: validation lags training by thousands of steps.",
          "mean T_val - T_train of the division runs", "5,800 steps", "p003_operations_table",
          operation_delay("div"), at_least(GROKKING_DELAY, unit=" steps")),
    Claim("003-validation-loss-rises", "003", "Fig. 2",
          "Before grokking, the validation loss rises while training accuracy is high.",
          "share of grokking runs whose validation loss rises 5 % above its T_train value before T_val",
          "qualitative", "p003_fig2_11_12_operations", grokking_share(validation_loss_climbs), at_least(0.5)),
    Claim("003-batch-correlation", "003", "Table 1, Fig. 3",
          "Batch size correlates positively with the grokking delay: smaller batches grok sooner.", _R, "+0.538",
          _CORR, correlation("batch_size"), sign(+1)),
    Claim("003-batch-highest", "003", "Table 1",
          "Batch size has the highest correlation with the delay of the five hyperparameters.",
          "batch size has the largest Pearson r", "yes (0.538)", _CORR, batch_correlates_most, is_true()),
    Claim("003-weight-decay-correlation", "003", "Table 1",
          "Weight decay correlates negatively with the delay: more weight decay, shorter delay.", _R, "-0.26",
          _CORR, correlation("wd"), sign(-1)),
    Claim("003-init-scale-no-effect", "003", "Table 1",
          "The initialization scale has no effect on the transformer's delay.", "Pearson r with the delay in epochs",
          "-0.001", _CORR, correlation("init_scale"), within(-0.1, 0.1, min_n=3)),
    Claim("003-noise-correlation", "003", "Table 1",
          "Input-embedding noise correlates positively with the delay.", _R, "+0.123", _CORR,
          correlation("noise"), sign(+1)),
    Claim("003-comprehension-band", "003", "Section 3.2, Fig. 4",
          "Comprehension lies mostly where train size / batch size is between 20 and 800.",
          "share of comprehension runs with a ratio in [20, 800]", "mostly", _GRID, band_share,
          at_least(0.5, min_n=3)),
    Claim("003-band-between", "003", "Section 3.2, Fig. 4",
          "The comprehension band lies between the confusion and the grokking regions.",
          "median ratio of comprehension runs between those of confusion and grokking runs", "yes", _GRID,
          band_between, is_true()),
    Claim("003-fewer-steps", "003", "Table 2",
          "Large batches and small training sets (a small ratio) fit the training set in fewer steps.",
          "Spearman rho of train size / batch with T_train in steps", "positive", _GRID,
          ratio_correlation("t_train"), sign(+1)),
    Claim("003-more-epochs", "003", "Table 2",
          "... but in more epochs.", "Spearman rho of train size / batch with T_train in epochs", "negative",
          _GRID, ratio_correlation("t_train_epochs"), sign(-1)),
    Claim("003-landscape-range", "003", "Section 3.3, Fig. 5",
          "Grokking optima are more uneven than comprehension optima: the loss range can be 8x larger.",
          "mean training-loss range around grokking over comprehension optima (003's directions)", "up to 8x",
          "p003_fig5_loss_landscapes", landscape_ratio("range"), at_least(1.0, unit="x")),
    Claim("003-landscape-roughness", "003", "Section 3.3, Fig. 5",
          "Non-grokking optima, even those that never reach 95 %, are flatter than grokking optima.",
          "mean training-loss roughness around grokking over non-grokking optima", "> 1 (by eye)",
          "p003_fig5_loss_landscapes", landscape_ratio("roughness", ("comprehension", "confusion")),
          at_least(1.0, unit="x")),
    Claim("003-attention-peak", "003", "Section 3.4, Fig. 6",
          "Attention Q, K, V norms take much larger values when grokking happens.",
          "mean peak attention norm of grokking runs over the other runs", "> 1", "p003_fig6_attention_fractions",
          attention_peak_ratio, at_least(1.0, unit="x")),
    Claim("003-attention-rise-fall", "003", "Section 3.4, Fig. 6",
          "The attention norm grows before grokking and falls once validation accuracy improves.",
          "share of grokking runs with a higher norm at T_val than at T_train that end 5 % below the peak",
          "qualitative", "p003_fig6_attention_fractions", grokking_share(attention_rises_then_falls), at_least(0.5)),
    Claim("003-less-decay-longer", "003", "Fig. 7",
          "Reducing weight decay (below 1) lengthens the grokking delay.",
          "Spearman rho of weight decay with T_val (not reached ranks last)", "negative",
          "p003_fig7_attention_wd_small", delay_falls_with_wd, sign(-1)),
    Claim("003-same-peak", "003", "Fig. 7",
          "With weight decay below 1 the attention norm reaches almost the same peak in every run.",
          "largest over smallest peak attention norm", "about 1", "p003_fig7_attention_wd_small", peak_spread,
          at_most(1.25, unit="x")),
    Claim("003-wd2-halves-delay", "003", "Fig. 8",
          "Weight decay 2 has about half the grokking delay of weight decay 1.", "delay at wd 2 / delay at wd 1",
          "about 0.5", "p003_fig8_attention_wd_large", delay_ratio(2.0, 1.0), within(0.3, 0.7)),
    Claim("003-large-wd-stays-low", "003", "Fig. 8",
          "With much larger weight decay, train and validation accuracy stay low.",
          "the largest weight decay's final train and validation accuracy both below 95 %", "yes",
          "p003_fig8_attention_wd_large", largest_wd_stays_low, is_true()),
    Claim("003-mnist-base-groks", "003", "Table 3, Fig. 9",
          "Omnigrok's MNIST setting (1K images, MSE, AdamW, init x 8) groks.", "phase of the base run", "grokking",
          "p003_table3_mnist_changes", change_phase("none", "grokking"), is_true()),
    Claim("003-mnist-cross-entropy", "003", "Table 3, Fig. 18",
          "With cross-entropy instead of MSE the MNIST model learns fast: no grokking.",
          "phase of the cross-entropy run is comprehension", "comprehension (\"Learn fast!\")",
          "p003_table3_mnist_changes", change_phase("cross-entropy", "comprehension"), is_true()),
    Claim("003-mnist-small-init", "003", "Table 3",
          "With initialization scale 0.1 instead of 8 the MNIST model does not grok.",
          "phase of the init-0.1 run is comprehension", "comprehension (\"Normal Results\")",
          "p003_table3_mnist_changes", change_phase("init scale 0.1", "comprehension"), is_true()),
    Claim("003-table3-rows", "003", "Table 3",
          "Row by row, the report's grokked / did not grok verdicts for 16 single changes.",
          "share of rows whose grokked? matches the report's", "17 rows", "p003_table3_mnist_changes",
          table3_agreement, at_least(0.75)),
)
