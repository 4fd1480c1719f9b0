"""The ledger's claims of papers 001, 002 and 004, each measured on small hand-made result files of the
shape the workflow writes (cells.csv, phases.csv, shard histories, a parity dataset) at the paths its
figure's kind reads, with the options that kind gives the real config's figure: one variant where
the claim holds, one where it does not, and one where it cannot be judged where a measure can say so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch

from grokking import io
from grokking.figures import figure_kind
from grokking.ledger import Claim, p001, p002, p004
from grokking.ledger.verdicts import FAILS, HOLDS, INCONCLUSIVE, Measured
from grokking.phases import classify_cells
from tests.conftest import load_config

CLAIMS = {c.key: c for c in (*p001.CLAIMS, *p002.CLAIMS, *p004.CLAIMS)}


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config()


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """An empty working directory: the figure kinds' input paths (results/<study>/...) resolve in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ writing result files
def row(cell_id: str, t_train: int | None = 100, t_val: int | None = None, train: float = 1.0, test: float = 0.1,
        seed: int = 0, budget: int = 30000, lr: float = 1e-3, wd: float = 1.0, **axes: Any) -> dict[str, Any]:
    """One row of a cells table, columns as the engine writes them."""
    return {"activation": "gelu", "cell_id": cell_id, "data_seed": 0, "lr": lr, "model_seed": seed, "wd": wd, **axes,
            "budget": budget, "steps_run": budget, "t_train": t_train, "t_val": t_val, "final_train_acc": train,
            "final_val_acc": test, "diverged": False, "diverged_step": None, "final_train_loss": 0.01,
            "final_val_loss": 1.0, "shard": "s000"}


def write_study(study: str, rows: list[dict[str, Any]], histories: dict[str, dict] | None = None,
                dataset: dict | None = None, gap: int = 1000) -> None:
    """results/<study>/cells.csv and phases.csv, and its shard's histories and dataset where given."""
    folder = Path("results") / study
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    cells = pd.DataFrame(rows)
    for column in ("t_train", "t_val"):
        cells[column] = cells[column].astype("Int64")
    cells.to_csv(folder / "cells.csv", index=False)
    classify_cells(cells, gap).to_csv(folder / "phases.csv", index=False)
    if histories is not None:
        io.save_torch(histories, folder / "shards" / "s000.history.pt")
    if dataset is not None:
        io.save_torch(dataset, folder / "dataset.pt")


def figure_io(config: dict, figure: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The files and options the figure's plot job (and its ledger job) get."""
    spec = config["figures"][figure]
    kind = figure_kind(spec["kind"])
    files = kind.inputs(spec, config["studies"], lambda study: [f"results/{study}/shards/s000.history.pt"])
    return files, kind.options(spec, config["studies"])


def judge(config: dict, key: str, options: dict[str, Any] | None = None) -> tuple[str, Measured]:
    """The verdict and measurement of claim ``key`` on the files under the working directory."""
    claim: Claim = CLAIMS[key]
    files, default = figure_io(config, claim.figure)
    measured = claim.measure(files, options if options is not None else default)
    assert isinstance(measured.text, str) and measured.text and measured.size
    return claim.rule(measured), measured


def modular_history(val_peak: float, steps: int = 30000) -> dict[str, torch.Tensor]:
    """A modular-arithmetic run's history: training fitted early, test accuracy rising to ``val_peak``."""
    step = torch.arange(0, steps + 1, 500)
    val = torch.linspace(0.02, val_peak, len(step))
    return {"step": step, "train_acc": torch.ones(len(step)), "val_acc": val, "train_loss": 1 - val,
            "val_loss": 1 - val, "param_norm": torch.ones(len(step)), "attn_norm": torch.ones(len(step), 2, 4)}


def seeds(study: str, n: int = 3, **values: Any) -> list[dict[str, Any]]:
    """``n`` seeds of one setting; a value given as a list varies by seed."""
    return [row(f"{study}_m{s}", seed=s, **{k: (v[s] if isinstance(v, list) else v) for k, v in values.items()})
            for s in range(n)]


# ------------------------------------------------------------------ 001
FRACTIONS = ("add41_a30", "add41_a50", "add41_a70")


@pytest.mark.parametrize("case, expected", [("more data sooner", HOLDS), ("more data later", FAILS),
                                            ("none generalizes alike", INCONCLUSIVE)])
def test_001_fraction_speed(config, results, case, expected):
    t_vals = {"more data sooner": [None, 6000, 3000], "more data later": [3000, 6000, None],
              "none generalizes alike": [None, None, None]}[case]
    for study, t_val in zip(FRACTIONS, t_vals):
        write_study(study, seeds(study, t_val=[None if t_val is None else t_val + 10 * s for s in range(3)],
                                 test=0.1 if t_val is None else 1.0))
    assert judge(config, "001-fraction-speed")[0] == expected


@pytest.mark.parametrize("case, expected", [("all lag", HOLDS), ("one keeps pace", FAILS), ("none fits", INCONCLUSIVE)])
def test_001_test_lags_train(config, results, case, expected):
    for i, study in enumerate(FRACTIONS):
        t_val = {"all lag": [None, 4000, 2500][i], "one keeps pace": [None, 4000, 600][i], "none fits": None}[case]
        write_study(study, seeds(study, t_train=None if case == "none fits" else 500, t_val=t_val))
    assert judge(config, "001-test-lags-train")[0] == expected


@pytest.mark.parametrize("accuracies, expected", [((0.1, 0.4, 0.9), HOLDS), ((0.9, 0.4, 0.1), FAILS),
                                                  ((0.3, 0.3, 0.3), INCONCLUSIVE)])
def test_001_batch128_fraction(config, results, accuracies, expected):
    for study, accuracy in zip(("add41_a30_b128", "add41_a50_b128", "add41_a70_b128"), accuracies):
        write_study(study, seeds(study, test=[accuracy, accuracy + 0.01, accuracy - 0.01]))
    assert judge(config, "001-batch128-fraction")[0] == expected


@pytest.mark.parametrize("train, expected", [(0.04, HOLDS), (1.0, FAILS)])
def test_001_three_operands(config, results, train, expected):
    write_study("add41_k3", seeds("add41_k3", t_train=None, train=train, test=0.03))
    verdict, measured = judge(config, "001-three-operands-fail")
    assert verdict == expected and measured.value == pytest.approx(train)


@pytest.mark.parametrize("t_val, expected", [(None, HOLDS), ([None, None, 9000], FAILS)])
def test_001_p113(config, results, t_val, expected):
    write_study("add113_a05", seeds("add113_a05", t_train=200, t_val=t_val))
    assert judge(config, "001-p113-no-grokking")[0] == expected


@pytest.mark.parametrize("architecture, key", [("MLP", "001-mlp-groks"), ("LSTM", "001-lstm-groks")])
@pytest.mark.parametrize("t_val, expected", [(5000, HOLDS), (None, FAILS)])
def test_001_architecture_groks(config, results, architecture, key, t_val, expected):
    for study in ("div97_transformer", "div97_mlp", "div97_mlp_wd", "div97_lstm", "div97_lstm_wd"):
        groks = study.startswith(f"div97_{architecture.lower()}") and not study.endswith("_wd")
        write_study(study, seeds(study, t_train=200, t_val=t_val if groks else None, budget=50000))
    assert judge(config, key)[0] == expected
    files, options = figure_io(config, CLAIMS[key].figure)  # a table without that architecture: nothing to judge
    options["settings"] = [{**s, "task": "x / y mod 97"} for s in options["settings"]]
    assert judge(config, key, options)[0] == INCONCLUSIVE


@pytest.mark.parametrize("best, expected", [(0.06, HOLDS), (0.9, FAILS)])
def test_001_division_low(config, results, best, expected):
    write_study("div41_adamw_full_batch", seeds("div41_adamw_full_batch", test=0.05))
    write_study("div41_adamw", seeds("div41_adamw", test=[best, best, best]))
    write_study("div41_sgd_nesterov", [row(f"sgd{lr}", lr=lr, wd=1e-4, test=0.04) for lr in (0.01, 0.03, 0.1, 0.3)])
    verdict, measured = judge(config, "001-division-low")
    assert verdict == expected and measured.value == pytest.approx(best)


@pytest.mark.parametrize("dropout, expected", [(0.9, HOLDS), (0.31, FAILS)])
def test_001_regularizers_help(config, results, dropout, expected):
    peaks = {"div41_plain": 0.3, "div41_dropout": dropout, "div41_wd005": 0.8, "div41_adamw": 1.0}
    for study, peak in peaks.items():
        rows = seeds(study, test=peak)
        write_study(study, rows, histories={r["cell_id"]: modular_history(peak) for r in rows})
    verdict, measured = judge(config, "001-regularizers-help")
    assert verdict == expected and measured.value == pytest.approx(min(dropout, 0.8) - 0.3, abs=1e-6)


# ------------------------------------------------------------------ 002
N, K, N_TEST, WIDTH = 20, 2, 64, 8
FIG2_EPOCHS = [0, 15, 50, 100, 150, 200, 1000]  # config.yaml's p002_fig2_tsne epochs


def parity_dataset() -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (N_TEST, N), generator=generator).float() * 2 - 1
    return {0: {"x_train": x, "y_train": x[:, :K].prod(1), "x_test": x, "y_test": x[:, :K].prod(1)}}


def parity_features() -> torch.Tensor:
    """Hidden units that see only x1 and x2, one per sign pattern, the rest zero: 2^k exact clusters,
    95 % of the weights at zero."""
    weight = torch.zeros(WIDTH, N)
    for unit, (a, b) in enumerate([(1, 1), (-1, -1), (1, -1), (-1, 1)]):
        weight[unit, :2] = torch.tensor([a, b])
    return weight


def parity_history(clustered: set[int], spectral: Callable[[np.ndarray], np.ndarray] | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """A parity run's history over 1,000 epochs with snapshots at every epoch Fig. 2 and 3 draw:
    parity features at the epochs in ``clustered``, random weights at the others."""
    generator = torch.Generator().manual_seed(seed)
    epochs = np.arange(0, 1001)
    weights = torch.stack([parity_features() if e in clustered else torch.randn(WIDTH, N, generator=generator) * 0.3
                           for e in FIG2_EPOCHS])
    norm = spectral(epochs) if spectral is not None else np.full(len(epochs), 2.0)
    ones = torch.ones(len(epochs))
    return {"step": torch.tensor(epochs), "train_acc": ones, "val_acc": ones, "train_loss": ones, "val_loss": ones,
            "param_norm": ones, "spectral_norm": torch.tensor(norm, dtype=torch.float32),
            "snapshots": {"epoch": torch.tensor(FIG2_EPOCHS), "hidden.weight": weights,
                          "hidden.bias": torch.zeros(len(FIG2_EPOCHS), WIDTH),
                          "readout.weight": torch.ones(len(FIG2_EPOCHS), 1, WIDTH)}}


def write_parity(t_train: int | None = 15, t_val: int | None = 180, clustered: set[int] = frozenset({1000}),
                 spectral: Callable[[np.ndarray], np.ndarray] | None = None, runs: int = 5) -> None:
    rows = [row(f"p{s}", t_train=t_train, t_val=t_val, seed=s, budget=1000, lr=0.1, wd=0.01) for s in range(runs)]
    histories = {r["cell_id"]: parity_history(set(clustered), spectral, s) for s, r in enumerate(rows)}
    write_study("parity", rows, histories=histories, dataset=parity_dataset(), gap=100)


@pytest.mark.parametrize("t_val, expected", [(180, HOLDS), (20, FAILS), (None, FAILS)])
def test_002_memorize_then_generalize(config, results, t_val, expected):
    write_parity(t_val=t_val)
    assert judge(config, "002-memorize-then-generalize")[0] == expected


@pytest.mark.parametrize("clustered, t_train, expected", [({1000}, 15, HOLDS), ({15, 1000}, 15, FAILS),
                                                          ({1000}, None, INCONCLUSIVE)])
def test_002_memorized_unclustered(config, results, clustered, t_train, expected):
    write_parity(t_train=t_train, clustered=clustered)
    verdict, measured = judge(config, "002-memorized-unclustered")
    assert verdict == expected
    assert "at epoch(s) 15" in measured.text or t_train is None


@pytest.mark.parametrize("clustered, t_val, expected", [({1000}, 180, HOLDS), ({15}, 180, FAILS),
                                                        ({1000}, None, INCONCLUSIVE)])
def test_002_generalized_clusters(config, results, clustered, t_val, expected):
    write_parity(t_val=t_val, clustered=clustered)
    verdict, measured = judge(config, "002-generalized-clusters")
    assert verdict == expected
    if expected == HOLDS:
        assert measured.value == pytest.approx(1.0)


@pytest.mark.parametrize("clustered, expected", [({1000}, HOLDS), ({15}, FAILS)])
def test_002_weights_coalesce(config, results, clustered, expected):
    write_parity(clustered=clustered)
    verdict, measured = judge(config, "002-weights-coalesce")
    assert verdict == expected
    if expected == HOLDS:  # all but the 8 weights of the parity units at zero
        assert measured.value == pytest.approx(1 - 8 / (WIDTH * N))


def bent(epochs: np.ndarray) -> np.ndarray:
    """Nearly flat until memorization (15), falling by half until generalization (180), then flat."""
    return np.interp(epochs, [0, 15, 180, 1000], [2.0, 1.99, 1.0, 0.99])


def steady(epochs: np.ndarray) -> np.ndarray:
    """Falling at one pace (on the log epoch axis the figure draws) from the start to generalization,
    then flat: no bend at memorization."""
    return np.where(epochs <= 180, 2.0 - np.log1p(epochs) / np.log1p(180), 1.0)


@pytest.mark.parametrize("spectral, t_val, expected", [(bent, 180, HOLDS), (steady, 180, FAILS),
                                                       (bent, None, INCONCLUSIVE)])
def test_002_spectral_two_bends(config, results, spectral, t_val, expected):
    write_parity(t_val=t_val, spectral=spectral)
    assert judge(config, "002-spectral-two-bends")[0] == expected


@pytest.mark.parametrize("spectral, t_val, expected", [(bent, 180, HOLDS), (None, 180, FAILS),
                                                       (bent, None, INCONCLUSIVE)])
def test_002_spectral_declines(config, results, spectral, t_val, expected):
    write_parity(t_val=t_val, spectral=spectral)
    verdict, measured = judge(config, "002-spectral-declines")
    assert verdict == expected
    if expected == HOLDS:
        assert measured.value == pytest.approx((1.99 - 1.0) / 1.99, abs=1e-3)


WD_AFTER = [0.01, 0.05, 0.1, 0.5, 1.0]


def wd_switch(t_val: Callable[[float], int | None]) -> None:
    rows = [row(f"w{v}_m{s}", t_train=15, t_val=t_val(v) and t_val(v) + s, seed=s, budget=1000, lr=0.1, wd=0.01,
                wd_after=v, test=1.0 if t_val(v) else 0.0) for v in WD_AFTER for s in range(3)]
    write_study("parity_wd_switch", rows, gap=100)


FASTER = {0.01: 180, 0.05: 60, 0.1: 35}  # generalizes sooner with more decay; never from 0.5 on


@pytest.mark.parametrize("case, expected", [("faster", HOLDS), ("slower", FAILS), ("one value", INCONCLUSIVE)])
def test_002_h1_faster(config, results, case, expected):
    t_val = {"faster": FASTER.get, "slower": lambda v: {0.01: 35, 0.05: 60, 0.1: 180}.get(v),
             "one value": lambda v: 100 if v == 0.01 else None}[case]
    wd_switch(t_val)
    assert judge(config, "002-h1-faster")[0] == expected


@pytest.mark.parametrize("case, expected", [("threshold", HOLDS), ("all generalize", FAILS), ("none does", FAILS)])
def test_002_h1_threshold(config, results, case, expected):
    t_val = {"threshold": FASTER.get, "all generalize": lambda v: 50, "none does": lambda v: None}[case]
    wd_switch(t_val)
    assert judge(config, "002-h1-threshold")[0] == expected


NOISE = [0.0, 0.05, 0.1, 0.2, 0.3]


def label_noise(t_val: Callable[[float, float], int | None]) -> None:
    rows = [row(f"n{wd}_{v}_m{s}", t_train=15, t_val=t_val(wd, v) and t_val(wd, v) + s, seed=s, budget=1000, lr=0.1,
                wd=wd, label_noise=v, test=1.0 if t_val(wd, v) else 0.7)
            for wd in (0.01, 0.1) for v in NOISE for s in range(3)]
    write_study("parity_label_noise", rows, gap=100)


SLOWER = {0.0: 30, 0.05: 60, 0.1: 120}  # later with more flipped labels; never from 0.2 on


@pytest.mark.parametrize("case, expected", [("slower", HOLDS), ("faster", FAILS), ("lines disagree", INCONCLUSIVE)])
def test_002_h2_slower(config, results, case, expected):
    faster = {0.0: 120, 0.05: 60, 0.1: 30}
    t_val = {"slower": lambda wd, v: SLOWER.get(v), "faster": lambda wd, v: faster.get(v),
             "lines disagree": lambda wd, v: (SLOWER if wd == 0.1 else faster).get(v)}[case]
    label_noise(t_val)
    assert judge(config, "002-h2-slower")[0] == expected


@pytest.mark.parametrize("case, expected", [("threshold", HOLDS), ("one line has none", FAILS)])
def test_002_h2_threshold(config, results, case, expected):
    t_val = {"threshold": lambda wd, v: SLOWER.get(v),
             "one line has none": lambda wd, v: 50 if wd == 0.1 else SLOWER.get(v)}[case]
    label_noise(t_val)
    assert judge(config, "002-h2-threshold")[0] == expected


# ------------------------------------------------------------------ 004
AVOIDED = {"avoid_full_batch": {"lr": 1e-3, "wd": 0.0}, "avoid_batch50": {"lr": 1e-3, "wd": 0.0},
           "avoid_lr7e-2": {"lr": 0.07, "wd": 0.0}, "avoid_wd1": {"lr": 1e-3, "wd": 1.0}}


def write_avoided(generalizing: set[str], budget: int = 30000) -> None:
    for study, hyper in AVOIDED.items():
        rows = seeds(study, t_train=300, t_val=8000 if study in generalizing else None,
                     test=1.0 if study in generalizing else 0.03, budget=budget, **hyper)
        write_study(study, rows)


@pytest.mark.parametrize("key, study", [("004-full-batch-avoids", "avoid_full_batch"),
                                        ("004-batch50-generalizes", "avoid_batch50"),
                                        ("004-lr-generalizes", "avoid_lr7e-2")])
@pytest.mark.parametrize("generalizes", [True, False])
def test_004_grokking_avoided(config, results, key, study, generalizes):
    write_avoided({study, "avoid_wd1"} if generalizes else {"avoid_wd1"})
    verdict, measured = judge(config, key)
    assert f"lr {AVOIDED[study]['lr']:g}" in measured.size  # the study it picked
    should_generalize = key != "004-full-batch-avoids"
    assert verdict == (HOLDS if generalizes == should_generalize else FAILS)


@pytest.mark.parametrize("key", ["004-full-batch-avoids", "004-batch50-generalizes"])
def test_004_no_generalization_before_3e4_steps_is_not_tested(config, results, key):
    write_avoided(set(), budget=10000)  # nothing generalized, but the review allows 3e4 steps
    assert judge(config, key)[0] == INCONCLUSIVE
    write_avoided({"avoid_full_batch", "avoid_batch50"}, budget=10000)  # generalizing early still counts
    assert judge(config, key)[0] == (FAILS if key == "004-full-batch-avoids" else HOLDS)


def test_004_grokking_avoided_without_the_study(config, results):
    write_avoided(set())
    files, options = figure_io(config, "p004_grokking_avoided_table")
    options["settings"] = [{**s, "batch_size": 0} for s in options["settings"]]  # no minibatch study left
    assert judge(config, "004-batch50-generalizes", options)[0] == INCONCLUSIVE


ALPHAS = [0.1, 0.316, 1.0, 3.16, 7.94, 10.0]


def write_scales(runs: dict[float, tuple[int | None, int | None]]) -> None:
    """One run per init scale: (T_train, T_val)."""
    rows = [row(f"a{a}", t_train=t[0], t_val=t[1], init_scale=a, lr=1e-3, wd=0.01, budget=100000)
            for a, t in runs.items()]
    write_study("omnigrok_init_scale", rows)


QUICK = {a: (500, 800) for a in ALPHAS if a <= 1}


@pytest.mark.parametrize("large, expected", [((500, 20000), HOLDS), ((500, 800), FAILS), ((None, None), FAILS),
                                             ((500, None), INCONCLUSIVE)])
def test_004_large_init_groks(config, results, large, expected):
    write_scales({**QUICK, 3.16: (500, 3000), 7.94: large, 10.0: (None, None)})
    verdict, measured = judge(config, "004-large-init-groks")
    assert verdict == expected and "alpha 7.94" in measured.text


@pytest.mark.parametrize("small, expected", [(QUICK, HOLDS), ({**QUICK, 1.0: (500, 6000)}, FAILS),
                                             ({**QUICK, 0.316: (500, None)}, FAILS),
                                             ({a: (None, None) for a in QUICK}, INCONCLUSIVE)])
def test_004_small_init_immediate(config, results, small, expected):
    write_scales({**small, 7.94: (500, 20000)})
    assert judge(config, "004-small-init-immediate")[0] == expected


LU_ALPHAS = [0.1, 0.32, 1.0, 3.2, 10.0]


def write_lu(config: dict, test: Callable[[float], float], t_val: Callable[[float], int | None]) -> None:
    """Every size study of the LU maps, one run per alpha: final test accuracy and T_val by alpha."""
    for study in config["figures"]["p004_omnigrok_lu_maps"]["studies"]:
        rows = [row(f"{study}_a{a}", t_train=1000, t_val=t_val(a), test=test(a), init_scale=a, wd=0.0, budget=10000)
                for a in LU_ALPHAS]
        write_study(study, rows)


def peaked(alpha: float) -> float:
    return 0.9 if alpha == 1.0 else 0.1


@pytest.mark.parametrize("case, expected", [("peak", HOLDS), ("flat", FAILS), ("norm free", INCONCLUSIVE)])
def test_004_lu_alpha_matters(config, results, case, expected):
    write_lu(config, peaked if case != "flat" else (lambda a: 0.9), lambda a: 1000)
    files, options = figure_io(config, "p004_omnigrok_lu_maps")
    options["held"] = case != "norm free"
    verdict, measured = judge(config, "004-lu-alpha-matters", options)
    assert verdict == expected
    if expected == HOLDS:
        assert measured.value == pytest.approx(0.8) and measured.n == len(options["studies"])


@pytest.mark.parametrize("t_val, expected", [(1000, HOLDS), (6000, FAILS), (None, INCONCLUSIVE)])
def test_004_lu_no_delay(config, results, t_val, expected):
    write_lu(config, peaked, lambda a: t_val if a == 1.0 else None)
    assert judge(config, "004-lu-no-delay")[0] == expected


# ------------------------------------------------------------------ the claims themselves
def test_every_claim_names_a_figure_of_the_config(config):
    for claim in CLAIMS.values():
        assert claim.figure in config["figures"], f"{claim.key}: no figure {claim.figure} in config.yaml"
        assert claim.key.startswith(f"{claim.paper}-") and claim.claim and claim.quantity and claim.paper_value


def test_helpers_rank_and_order_runs():
    cells = pd.DataFrame({"t_val": pd.array([300, None, 100, None], dtype="Int64"), "budget": 1000,
                          "final_val_acc": [1.0, 0.4, 1.0, 0.9]})
    assert list(np.argsort(p001.lateness(cells))) == [2, 0, 3, 1]  # reached first, then by test accuracy
    rho, low, high, n = p001.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])
    assert (rho, n) == (-1.0, 4) and low == high == -1.0
    assert math.isnan(p001.rank_correlation([1, 1, 1], [1, 2, 3])[0])


def test_every_claim_is_tested():
    """Each claim of the three papers is judged by a test above (its key is spelt out there)."""
    source = Path(__file__).read_text()
    untested = [key for key in CLAIMS if f'"{key}"' not in source.replace(f'"{key}"' + ": ", "")]
    assert not untested, f"claims without a test: {untested}"
