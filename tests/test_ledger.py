"""The claims ledger: its verdict rules, and the 000 and 003 claims measured on hand-made results
that are then changed just enough to flip each verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from grokking import io
from grokking.ledger import CLAIMS, NOT_RUN, PAPERS, claims_of, ledger_markdown, ledger_table, measure_figure
from grokking.ledger import p003
from grokking.ledger.verdicts import FAILS, HOLDS, INCONCLUSIVE, Measured, at_least, at_most, is_true, sign, within


def m(value: float, low: float = math.nan, high: float = math.nan, n: int | None = None) -> Measured:
    return Measured(value, "", "", low=low, high=high, n=n)


def by_key(key: str):
    return next(c for c in CLAIMS if c.key == key)


# ------------------------------------------------------------------ rules
@pytest.mark.parametrize("rule, value, expected", [
    (at_least(4), 4, HOLDS), (at_least(4), 3, FAILS), (at_least(4), math.nan, INCONCLUSIVE),
    (at_most(1.25), 1.2, HOLDS), (at_most(1.25), 1.3, FAILS),
    (within(0.3, 0.7), 0.5, HOLDS), (within(0.3, 0.7), 0.9, FAILS), (within(0.3, 0.7), 0.1, FAILS),
    (is_true(), 1.0, HOLDS), (is_true(), 0.0, FAILS), (is_true(), math.nan, INCONCLUSIVE),
])
def test_threshold_rules(rule, value, expected):
    assert rule(m(value)) == expected


def test_sign_reads_the_interval_then_the_point():
    rule = sign(+1)
    assert rule(m(0.5, 0.1, 0.8, n=10)) == HOLDS
    assert rule(m(-0.5, -0.8, -0.1, n=10)) == FAILS
    assert rule(m(0.5, -0.1, 0.8, n=10)) == INCONCLUSIVE  # the interval holds 0
    assert rule(m(0.5, n=3)) == HOLDS and sign(-1)(m(0.5, n=3)) == FAILS  # no interval: the point's sign
    assert rule(m(0.5, 0.1, 0.8, n=2)) == INCONCLUSIVE  # too few runs
    with pytest.raises(ValueError, match="expected"):
        sign(0)


def test_minimum_runs_make_a_rule_inconclusive():
    assert at_least(0.5, min_n=3)(m(0.9, n=2)) == INCONCLUSIVE
    assert at_least(0.5, min_n=3)(m(0.9, n=3)) == HOLDS


# ------------------------------------------------------------------ registry and tables
def test_registry_keys_papers_and_rules_are_complete():
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    assert {c.paper for c in CLAIMS} == set(PAPERS)
    for claim in CLAIMS:
        assert claim.claim and claim.quantity and claim.paper_value and claim.rule.text, claim.key


def test_every_claim_is_tested_on_a_figure_of_the_config():
    from pathlib import Path

    import yaml

    figures = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["figures"]
    assert {c.figure for c in CLAIMS} <= set(figures)


def test_ledger_table_marks_unbuilt_figures_not_run():
    built = "fig1_toy_phases"
    rows = pd.DataFrame([{"key": c.key, "paper": c.paper, "figure": c.figure, "verdict": HOLDS, "preset": "demo"}
                         for c in claims_of(built)])
    table = ledger_table([rows], [built], "demo")
    assert len(table) == len(CLAIMS)
    assert set(table.loc[table["figure"] != built, "verdict"]) == {NOT_RUN}
    assert (table.loc[table["figure"] == built, "verdict"] == HOLDS).all()
    with pytest.raises(ValueError, match="lack"):
        ledger_table([], [built], "demo")
    markdown = ledger_markdown(table)
    assert all(f"## {paper}" in markdown for paper in PAPERS)


# ------------------------------------------------------------------ 000: phase diagrams
LETTERS = {"C": "comprehension", "G": "grokking", "M": "memorization", "X": "confusion"}


def phases_csv(path, rows: list[str]) -> str:
    """A phases table: rows[i] is the i-th lr, character j the j-th wd."""
    records = [{"cell_id": f"c{i}_{j}", "lr": 10.0 ** i, "wd": float(j), "data_seed": 42, "model_seed": 102,
                "activation": "tanh", "budget": 1000, "t_train": 1, "t_val": 2, "gap": 1,
                "phase": LETTERS[letter], "diverged": False}
               for i, line in enumerate(rows) for j, letter in enumerate(line)]
    pd.DataFrame(records).to_csv(path, index=False)
    return str(path)


def test_000_phase_claims_flip_with_the_diagram(tmp_path):
    good = phases_csv(tmp_path / "good.csv", ["CGM", "CGM", "XXX"])  # grokking between C and M, 4 phases
    bad = phases_csv(tmp_path / "bad.csv", ["CCM", "GMM", "MMM"])  # no confusion; G has C above, M right...
    worse = phases_csv(tmp_path / "worse.csv", ["GCM", "CCM", "XXX"])  # G at the edge: nothing on its left
    four, between = by_key("000-toy-cls-four-phases"), by_key("000-toy-between")
    assert four.rule(four.measure({"phases": [good]}, {})) == HOLDS
    assert four.rule(four.measure({"phases": [bad]}, {})) == FAILS
    assert between.rule(between.measure({"phases": [good]}, {})) == HOLDS
    assert between.rule(between.measure({"phases": [worse]}, {})) == FAILS
    nothing = phases_csv(tmp_path / "none.csv", ["CCM", "XXM"])
    assert between.rule(between.measure({"phases": [nothing]}, {})) == INCONCLUSIVE
    appears = by_key("000-mnist-grokking")
    assert appears.rule(appears.measure({"phases": [good]}, {})) == HOLDS
    assert appears.rule(appears.measure({"phases": [nothing]}, {})) == FAILS


# ------------------------------------------------------------------ 003: delays of many runs
def delay_files(tmp_path, runs: list[dict]) -> tuple[dict, dict]:
    """Files and options of a batch_grid / correlations figure: one study per (p, batch) in ``runs``
    (each run: p, batch, t_train, t_val and optionally noise, init_scale, lr, wd)."""
    files, studies = {}, []
    frame = pd.DataFrame(runs)
    for i, ((p, batch), group) in enumerate(frame.groupby(["p", "batch"])):
        name = f"s_p{p}_b{batch}"
        cells = pd.DataFrame({
            "cell_id": [f"{name}_{k}" for k in range(len(group))], "lr": group.get("lr", 1e-3),
            "wd": group.get("wd", 1.0), "noise": group.get("noise", 0.0), "init_scale": group.get("init_scale", 1.0),
            "data_seed": 0, "model_seed": 0, "budget": 10000, "diverged": False,
            "t_train": group["t_train"], "t_val": group["t_val"]})
        path = tmp_path / f"{name}.csv"
        cells.to_csv(path, index=False)
        files[f"cells_{i}"] = [str(path)]
        studies.append({"name": name, "p": int(p), "operation": "div", "train_fraction": 0.3, "batch_size": int(batch),
                        "budget": 10000, "threshold": 0.95})
    return files, {"title": "", "grokking_delay": None, "studies": studies}


def judge(key: str, files: dict, options: dict) -> str:
    claim = by_key(key)
    return claim.rule(claim.measure(files, options))


def test_003_batch_correlation_and_ranking_flip(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for batch in (8, 32, 128, 512):
        for k in range(6):  # delay grows with the batch; weight decay random
            t_train = 100
            runs.append({"p": 97, "batch": batch, "t_train": t_train, "t_val": t_train + 10 * batch + int(rng.integers(50)),
                         "wd": float(rng.choice([0.1, 1.0])), "init_scale": float(rng.choice([1.0, 10.0]))})
    (tmp_path / "a").mkdir()
    files, options = delay_files(tmp_path / "a", runs)
    assert judge("003-batch-correlation", files, options) == HOLDS
    assert judge("003-batch-highest", files, options) == HOLDS
    flipped = [{**r, "t_val": r["t_train"] + 20000 // r["batch"]} for r in runs]  # now smaller batches lag
    (tmp_path / "b").mkdir()
    files, options = delay_files(tmp_path / "b", flipped)
    assert judge("003-batch-correlation", files, options) == FAILS
    assert judge("003-batch-highest", files, options) == FAILS
    never = [{**r, "t_val": None} for r in runs]
    (tmp_path / "c").mkdir()
    files, options = delay_files(tmp_path / "c", never)
    assert judge("003-batch-correlation", files, options) == INCONCLUSIVE


def test_003_init_scale_no_effect_flips(tmp_path):
    # each init scale gets the same five delays: r = 0
    runs = [{"p": 97, "batch": 32, "t_train": 100, "t_val": 1000 + 100 * (k // 2), "init_scale": s}
            for k, s in enumerate([1.0, 10.0] * 5)]
    (tmp_path / "a").mkdir()
    files, options = delay_files(tmp_path / "a", runs)
    claim = by_key("003-init-scale-no-effect")
    measured = claim.measure(files, options)
    assert abs(measured.value) <= 0.1 and claim.rule(measured) == HOLDS
    (tmp_path / "b").mkdir()
    files, options = delay_files(tmp_path / "b", [{**r, "t_val": 1000 + 100 * r["init_scale"]} for r in runs])
    assert judge("003-init-scale-no-effect", files, options) == FAILS


def test_003_comprehension_band_flips(tmp_path):
    # p 97 at 30 %: 2,822 training equations. Batch 32 -> ratio 88 (in band); batch 4 -> 706 (in band);
    # p 23: 158 equations, batch 128 -> ratio 1.2 (out of band).
    inside = [{"p": 97, "batch": b, "t_train": 100, "t_val": 300} for b in (4, 32) for _ in range(3)]
    outside = [{"p": 23, "batch": 128, "t_train": 100, "t_val": 300} for _ in range(3)]
    grok = [{"p": 23, "batch": 64, "t_train": 100, "t_val": 5000}]
    (tmp_path / "a").mkdir()
    files, options = delay_files(tmp_path / "a", inside + grok)
    assert judge("003-comprehension-band", files, options) == HOLDS
    (tmp_path / "b").mkdir()
    files, options = delay_files(tmp_path / "b", outside + grok)
    assert judge("003-comprehension-band", files, options) == FAILS
    (tmp_path / "c").mkdir()
    files, options = delay_files(tmp_path / "c", grok)
    assert judge("003-comprehension-band", files, options) == INCONCLUSIVE


# ------------------------------------------------------------------ 003: curves with attention norms
def curve_files(tmp_path, runs: list[dict]) -> tuple[dict, dict]:
    """Files and options of a curves figure with one study: runs give wd, t_train, t_val, final
    accuracies and an attention-norm curve ``attn`` (one value per evaluation at steps 0, 100, ...)."""
    cells, histories = [], {}
    for k, run in enumerate(runs):
        cell_id = f"c{k}"
        cells.append({"cell_id": cell_id, "lr": 1e-3, "wd": run["wd"], "data_seed": 0, "model_seed": 0,
                      "budget": 1000 * len(run["attn"]), "t_train": run["t_train"], "t_val": run["t_val"],
                      "final_train_acc": run.get("train_acc", 1.0), "final_val_acc": run.get("val_acc", 1.0)})
        n = len(run["attn"])
        attn = torch.zeros(n, 2, 4, dtype=torch.float64)
        attn[:, -1, :3] = torch.tensor(run["attn"], dtype=torch.float64)[:, None]
        histories[cell_id] = {"step": torch.arange(n) * 1000.0, "attn_norm": attn,
                              "val_loss": torch.tensor(run.get("val_loss", [1.0] * n), dtype=torch.float64)}
    pd.DataFrame(cells).to_csv(tmp_path / "cells.csv", index=False)
    io.save_torch(histories, tmp_path / "s000.history.pt")
    options = {"studies": [{"task": "x / y mod 97", "train_fraction": 0.3, "batch_size": 512, "budget": 10000}]}
    return {"cells_0": [str(tmp_path / "cells.csv")], "histories_0": [str(tmp_path / "s000.history.pt")]}, options


def test_003_attention_claims_flip(tmp_path):
    grokking = {"wd": 1.0, "t_train": 1000, "t_val": 6000, "attn": [1, 3, 5, 8, 9, 10, 7, 6, 5, 5]}
    comprehension = {"wd": 1.0, "t_train": 1000, "t_val": 1500, "attn": [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]}
    (tmp_path / "a").mkdir()
    files, options = curve_files(tmp_path / "a", [grokking, comprehension])
    assert judge("003-attention-peak", files, options) == HOLDS
    assert judge("003-attention-rise-fall", files, options) == HOLDS
    flat = {**grokking, "attn": [1, 2, 2, 2, 2, 2, 2, 2, 2, 2]}  # a lower peak that never falls
    (tmp_path / "b").mkdir()
    files, options = curve_files(tmp_path / "b", [flat, comprehension])
    assert judge("003-attention-peak", files, options) == FAILS
    assert judge("003-attention-rise-fall", files, options) == FAILS
    (tmp_path / "c").mkdir()
    files, options = curve_files(tmp_path / "c", [comprehension])
    assert judge("003-attention-peak", files, options) == INCONCLUSIVE


def test_003_weight_decay_claims_flip(tmp_path):
    peak = [1, 5, 9, 9, 8, 8, 8, 8, 8, 8]
    runs = [{"wd": 1.0, "t_train": 500, "t_val": 4500, "attn": peak},
            {"wd": 2.0, "t_train": 500, "t_val": 2500, "attn": peak},
            {"wd": 10.0, "t_train": None, "t_val": None, "attn": [1] * 10, "train_acc": 0.3, "val_acc": 0.1}]
    (tmp_path / "a").mkdir()
    files, options = curve_files(tmp_path / "a", runs)
    assert judge("003-wd2-halves-delay", files, options) == HOLDS  # 2,000 / 4,000
    assert judge("003-large-wd-stays-low", files, options) == HOLDS
    assert judge("003-less-decay-longer", files, options) == FAILS  # T_val rises with wd: wd 10 never
    assert judge("003-same-peak", files, options) == FAILS  # 9 against 1
    runs[1]["t_val"] = 4400
    runs[2].update(t_train=500, t_val=900, train_acc=1.0, val_acc=1.0, attn=peak)
    (tmp_path / "b").mkdir()
    files, options = curve_files(tmp_path / "b", runs)
    assert judge("003-wd2-halves-delay", files, options) == FAILS  # 3,900 / 4,000
    assert judge("003-large-wd-stays-low", files, options) == FAILS
    assert judge("003-less-decay-longer", files, options) == HOLDS
    assert judge("003-same-peak", files, options) == HOLDS
    runs[0]["attn"] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12]  # still rising at the end: no peak to compare
    (tmp_path / "c").mkdir()
    files, options = curve_files(tmp_path / "c", runs)
    assert judge("003-same-peak", files, options) == INCONCLUSIVE


def test_003_validation_loss_rise_flips(tmp_path):
    run = {"wd": 1.0, "t_train": 1000, "t_val": 6000, "attn": [1] * 10,
           "val_loss": [5, 4, 4.5, 6, 7, 6, 2, 1, 1, 1]}
    (tmp_path / "a").mkdir()
    files, options = curve_files(tmp_path / "a", [run])
    assert judge("003-validation-loss-rises", files, options) == HOLDS
    (tmp_path / "b").mkdir()
    files, options = curve_files(tmp_path / "b", [{**run, "val_loss": [5, 4, 3.9, 3, 2, 2, 2, 1, 1, 1]}])
    assert judge("003-validation-loss-rises", files, options) == FAILS


# ------------------------------------------------------------------ 003: landscapes and Table 3
def landscape_files(tmp_path, grokking_range: float, comprehension_range: float,
                    other_t_val: int | None = 300) -> tuple[dict, dict]:
    cells = pd.DataFrame({"cell_id": ["g", "c"], "lr": 1e-3, "wd": 1.0, "data_seed": 0, "model_seed": 0,
                          "t_train": [100, 100], "t_val": pd.array([5100, other_t_val], dtype="Int64")})
    cells.to_csv(tmp_path / "cells.csv", index=False)
    stats = lambda r: {"train_loss": {"range": r, "roughness": r / 10}}  # noqa: E731
    io.save_torch({"g": {"stats": stats(grokking_range), "settings": {"points": 21, "normalization": "tensor"}},
                   "c": {"stats": stats(comprehension_range), "settings": {"points": 21, "normalization": "tensor"}}},
                  tmp_path / "landscape.pt")
    return {"landscape_0": [str(tmp_path / "landscape.pt")], "cells_0": [str(tmp_path / "cells.csv")]}, {"gaps": [1000]}


def test_003_landscape_ratios_flip(tmp_path):
    (tmp_path / "a").mkdir()
    files, options = landscape_files(tmp_path / "a", 8.0, 1.0)
    assert by_key("003-landscape-range").measure(files, options).value == pytest.approx(8.0)
    assert judge("003-landscape-range", files, options) == HOLDS
    assert judge("003-landscape-roughness", files, options) == HOLDS
    (tmp_path / "b").mkdir()
    files, options = landscape_files(tmp_path / "b", 0.5, 1.0)
    assert judge("003-landscape-range", files, options) == FAILS
    assert judge("003-landscape-roughness", files, options) == FAILS
    (tmp_path / "c").mkdir()  # the other optimum never reached 95 %: no comprehension to compare with
    files, options = landscape_files(tmp_path / "c", 8.0, 1.0, other_t_val=None)
    assert judge("003-landscape-range", files, options) == INCONCLUSIVE
    assert judge("003-landscape-roughness", files, options) == HOLDS  # non-grokking optima count


def test_003_table3_claims_flip(monkeypatch):
    table = pd.DataFrame({
        "change": ["none: Omnigrok's setting", "cross-entropy instead of MSE", "init scale 0.1 instead of 8", "batch 32"],
        "phase": ["grokking", "comprehension", "comprehension", "grokking"],
        "t_train": pd.array([2000, 100, 100, 2000], dtype="Int64"), "t_val": pd.array([30000, 300, 200, 25000], dtype="Int64"),
        "final_test_acc": [0.9, 0.95, 0.95, 0.9], "budget": 40000,
        "agrees": [True, True, True, True]})
    monkeypatch.setattr(p003, "_change_table", lambda files, options: table)
    for key in ("003-mnist-base-groks", "003-mnist-cross-entropy", "003-mnist-small-init", "003-table3-rows"):
        assert judge(key, {}, {}) == HOLDS, key
    table["phase"] = ["memorization", "grokking", "memorization", "grokking"]
    table["agrees"] = [False, False, True, True]
    for key in ("003-mnist-base-groks", "003-mnist-cross-entropy", "003-mnist-small-init", "003-table3-rows"):
        assert judge(key, {}, {}) == FAILS, key


def test_measure_figure_writes_one_row_per_claim(tmp_path):
    path = phases_csv(tmp_path / "p.csv", ["CGM", "CGM", "XXX"])
    rows = measure_figure("fig1_toy_phases", {"phases": [path, path]}, {}, "demo")
    assert list(rows["key"]) == [c.key for c in claims_of("fig1_toy_phases")]
    assert set(rows["verdict"]) == {HOLDS} and set(rows["preset"]) == {"demo"}
