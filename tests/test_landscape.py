"""Loss landscapes (paper 003, section 3.3): filter-normalized directions, the vmapped plane against a
plain loop, the surface statistics, the landscape verb on tiny study files, and the figure."""

import argparse
import copy
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from grokking import io, landscape, landscape_verb
from grokking.figures import landscape as landscape_figure
from grokking.landscape import (filter_normalized_directions, loss_plane, modular_landscape, surface_stats,
                                unit_directions)
from grokking.modular import build_model, modular_split

P = 7


def tiny_study(architecture: str = "transformer") -> dict:
    model = {"architecture": architecture, "width": 16, "layers": 1, "heads": 2, "hidden": 32, "dropout": 0.0,
             "layernorm": "post" if architecture == "transformer" else "pre"}
    return {"task": "modular", "p": P, "operation": "add", "arity": 2, "train_fraction": 0.5, "model": model,
            "grokking_gap": 1000}


def trained_like(study: dict, seed: int) -> dict[str, torch.Tensor]:
    """A model's parameters moved off their initialisation (biases and LayerNorm too)."""
    generator = torch.Generator().manual_seed(seed)
    return {n: t + 0.3 * torch.randn(t.shape, generator=generator)
            for n, t in build_model(study, seed, "relu").state_dict().items()}


def test_directions_are_filter_normalized_and_deterministic():
    params = trained_like(tiny_study(), 0)
    d1, d2 = filter_normalized_directions(params, seed=3)
    for name, p in params.items():
        if p.dim() < 2:
            assert not d1[name].any() and not d2[name].any(), name  # biases, LayerNorm: ignored
            continue
        for d in (d1, d2):
            torch.testing.assert_close(d[name].flatten(1).norm(dim=1), p.flatten(1).norm(dim=1))
    assert any(p.dim() >= 2 for p in params.values())
    again = filter_normalized_directions(params, seed=3)
    assert all(torch.equal(a[n], b[n]) for a, b in zip((d1, d2), again) for n in params)
    other = filter_normalized_directions(params, seed=4)
    assert not torch.equal(other[0]["head.weight"], d1["head.weight"])
    assert not torch.equal(d1["head.weight"], d2["head.weight"])


def test_unit_directions_are_the_public_codes_unit_norm_tensors():
    params = trained_like(tiny_study(), 0)
    for d in unit_directions(params, seed=0):
        for name, t in d.items():
            assert abs(float(t.norm()) - 1.0) < 1e-5, name


def loop_plane(model, params, directions, x, y, alphas, betas):
    """The plain reference: load each point's parameters into a copy of the model and run it."""
    model = copy.deepcopy(model).eval()
    loss, acc = torch.zeros(len(alphas), len(betas)), torch.zeros(len(alphas), len(betas))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                model.load_state_dict({n: p + a * directions[0][n] + b * directions[1][n] for n, p in params.items()})
                logits = model(x)
                loss[i, j] = F.cross_entropy(logits.double(), y)
                acc[i, j] = (logits.argmax(-1) == y).double().mean()
    return loss, acc


@pytest.mark.parametrize("architecture", ["transformer", "mlp", "lstm"])
def test_vmapped_plane_equals_a_plain_loop(architecture, monkeypatch):
    monkeypatch.setattr(landscape, "ROWS_PER_FORWARD", 7)  # chunks of points and of rows, with remainders
    study = tiny_study(architecture)
    params = trained_like(study, 1)
    model = build_model(study, 1, "relu")
    split = modular_split(P, "add", 2, 0.5, 0)
    x, y = split.x_train[:10], split.y_train[:10]
    directions = filter_normalized_directions(params, seed=0)
    alphas, betas = torch.linspace(-1, 1, 3), torch.linspace(-0.5, 0.5, 4)  # not square: axes kept apart
    loss, acc = loss_plane(model, params, directions, x, y, alphas, betas)
    expected_loss, expected_acc = loop_plane(model, params, directions, x, y, alphas, betas)
    assert loss.shape == (3, 4)
    torch.testing.assert_close(loss.float(), expected_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acc.float(), expected_acc)


def test_surface_stats_tell_a_flat_or_smooth_surface_from_a_bumpy_one():
    a, b = np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 11), indexing="ij")
    plane = surface_stats(2 + 0.5 * a - b)
    assert plane["range"] == pytest.approx(3.0) and plane["roughness"] == pytest.approx(0, abs=1e-12)
    bowl = surface_stats(a**2 + b**2)  # roughness c h^2 = 0.04: small next to its range 2
    assert bowl["roughness"] == pytest.approx(0.04) and bowl["relative_roughness"] == pytest.approx(0.02)
    bumpy = surface_stats(a**2 + b**2 + 0.5 * (-1.0) ** np.add.outer(np.arange(11), np.arange(11)))
    assert bumpy["roughness"] > 10 * bowl["roughness"]
    constant = surface_stats(np.full((5, 5), 3.0))
    assert constant["range"] == 0 and constant["roughness"] == 0 and constant["relative_roughness"] == 0
    holes = np.ones((5, 5))
    holes[2, 2] = np.nan
    stats = surface_stats(holes)
    assert stats["nonfinite"] == 1 and stats["range"] == 0 and stats["roughness"] == 0  # 4 points see the hole
    assert np.isnan(surface_stats(np.full((3, 3), np.inf))["range"])


def write_tiny_study(root) -> dict[str, str]:
    """dataset.pt, cells.csv and one shard history whose cells carry final_params (one without, one
    diverged), as a study trained with save_weights writes them."""
    study = tiny_study()
    split = modular_split(P, "add", 2, 0.5, 0)
    io.save_torch({0: asdict(split)}, root / "dataset.pt")
    rows, histories = [], {}
    for k, (t_train, t_val) in enumerate([(100, 1500), (200, 400), (None, None), (50, None)]):
        cell_id = f"lr0.001_wd1_d0_m{k}"
        rows.append({"cell_id": cell_id, "lr": 1e-3, "wd": 1.0, "data_seed": 0, "model_seed": k,
                     "activation": "gelu", "budget": 10000, "steps_run": 10000, "t_train": t_train,
                     "t_val": t_val, "final_train_acc": 1.0, "final_val_acc": 0.5, "diverged": k == 2})
        params = trained_like(study, k)
        if k == 2:
            params["head.weight"][0, 0] = float("nan")
        histories[cell_id] = {"step": torch.tensor([0, 10000])} | ({} if k == 3 else {"final_params": params})
    io.write_csv(pd.DataFrame(rows).astype({"t_train": "Int64", "t_val": "Int64"}), root / "cells.csv")
    io.save_torch(histories, root / "s000.history.pt")
    return {"study": study, "dataset": str(root / "dataset.pt"), "cells": str(root / "cells.csv"),
            "histories": str(root / "s000.history.pt"), "out": str(root / "landscape.pt")}


def test_landscape_verb_writes_every_cell_with_finite_final_params(tmp_path):
    files = write_tiny_study(tmp_path)
    parser = argparse.ArgumentParser()
    landscape_verb.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["landscape", "--study", json.dumps(files["study"]), "--histories", files["histories"],
                              "--dataset", files["dataset"], "--cells", files["cells"], "--out", files["out"],
                              "--span", "0.5", "--points", "5", "--rows", "6", "--seed", "1"])
    args.func(args)
    written = io.load_torch(files["out"])
    assert sorted(written) == ["lr0.001_wd1_d0_m0", "lr0.001_wd1_d0_m1"]  # m2 diverged, m3 saved no weights
    cell = written["lr0.001_wd1_d0_m0"]
    assert cell["train_loss"].shape == cell["val_acc"].shape == (5, 5)
    assert cell["alphas"].tolist() == pytest.approx([-0.5, -0.25, 0, 0.25, 0.5])
    assert cell["train_rows"] == cell["val_rows"] == 6
    assert set(cell["stats"]["val_loss"]) >= {"range", "roughness"}
    # the centre is the trained model itself
    split = modular_split(P, "add", 2, 0.5, 0)
    model = build_model(files["study"], 0)
    model.load_state_dict(io.load_histories([files["histories"]])["lr0.001_wd1_d0_m0"]["final_params"])
    with torch.no_grad():
        centre = F.cross_entropy(model.eval()(split.x_val[:6]).double(), split.y_val[:6])
    assert float(cell["val_loss"][2, 2]) == pytest.approx(float(centre), rel=1e-5)


def test_modular_landscape_refuses_parameters_of_another_model():
    params = trained_like(tiny_study(), 0)
    params["extra.weight"] = torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match="extra.weight"):
        modular_landscape(tiny_study(), params, modular_split(P, "add", 2, 0.5, 0), 0, 1.0, 3, 4, 0)


def test_landscape_figure_draws_a_row_per_run(tmp_path):
    files = write_tiny_study(tmp_path)
    split = modular_split(P, "add", 2, 0.5, 0)
    grids = {f"lr0.001_wd1_d0_m{k}": modular_landscape(files["study"], trained_like(files["study"], k), split, k,
                                                       1.0, 5, 8, 0) for k in (0, 1)}
    io.save_torch(grids, tmp_path / "landscape.pt")
    kind = landscape_figure.KIND
    spec = {"kind": "landscape", "studies": ["tiny"], "title": "synthetic"}
    assert kind.inputs(spec, {}, lambda s: []) == {"landscape_0": ["results/tiny/landscape_filter.pt"],
                                                  "cells_0": ["results/tiny/cells.csv"]}
    options = kind.options(spec, {"tiny": files["study"]})
    assert options == {"title": "synthetic", "labels": ["tiny"], "gaps": [1000]}
    assert kind.options({**spec, "grokking_delay": 500}, {"tiny": files["study"]})["gaps"] == [500]
    pdf, png = tmp_path / "fig.pdf", tmp_path / "fig.png"
    kind.draw({"landscape_0": [str(tmp_path / "landscape.pt")], "cells_0": [files["cells"]]}, options,
              str(pdf), str(png))
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    cells = pd.read_csv(files["cells"], dtype={"t_train": "Int64", "t_val": "Int64"})
    titles = [title for title, _ in landscape_figure.study_runs(grids, cells, "tiny", 1000)]
    assert titles[0].endswith("T_train 100, T_val 1,500, delay 1,400: grokking")
    assert titles[1].endswith("delay 200: comprehension")
    assert landscape_figure.run_title("tiny", cells.iloc[2], 1000).endswith(
        "T_train not reached, T_val not reached: confusion")
