"""Modular arithmetic: the equations, the transformer, and the stacked engine against a plain loop."""

import pytest
import torch
from torch.nn import functional as F

from grokking.config import ConfigError, validate_config
from grokking.grid import study_cells
from grokking.modular import Decoder, build_model, epoch_order, equations, input_noise, modular_split
from grokking.schedule import eval_steps
from grokking.tasks import modular_trainer
from grokking.tasks.modular_trainer import train_modular_shard
from grokking.trainer import EngineSettings

SMALL = {"task": "modular", "p": 11, "train_fraction": 0.5, "budget": 60, "batch_size": 16,
         "grid": {"lr": {"values": [1e-3, 3e-3]}, "wd": {"values": [1.0]}}, "model_seeds": [0, 1],
         "model": {"width": 16, "layers": 2, "heads": 2}, "eval": {"strides": [{"every": 10, "until": 60}]}}


def small_study(**changes):
    return validate_config({"engine": {}, "figures": {}, "studies": {"m": {**SMALL, **changes}}})["studies"]["m"]


def test_equations_tokens_and_answers():
    tokens, answers = equations(5, "sub")
    assert tokens.shape == (25, 4) and tokens[7].tolist() == [1, 5, 2, 6]  # x=1 op y=2 =
    assert answers[7] == (1 - 2) % 5
    tokens, answers = equations(7, "div")
    assert len(tokens) == 42  # y != 0
    x, y = tokens[:, 0], tokens[:, 2]
    assert torch.equal((answers * y) % 7, x)  # z = x / y  <=>  z * y = x: the true inverse
    tokens, answers = equations(5, "add", arity=3)
    assert tokens.shape == (125, 6) and tokens[-1].tolist() == [4, 5, 4, 5, 4, 6]
    assert torch.equal(answers, tokens[:, 0::2].sum(1) % 5)


def test_split_is_a_seeded_permutation_of_every_equation():
    a, b = modular_split(11, "add", 2, 0.3, 0), modular_split(11, "add", 2, 0.3, 0)
    assert torch.equal(a.x_train, b.x_train) and len(a.y_train) == int(0.3 * 121)
    rows = {tuple(r) for r in torch.cat([a.x_train, a.x_val]).tolist()}
    assert len(rows) == 121
    assert not torch.equal(modular_split(11, "add", 2, 0.3, 1).x_train, a.x_train)


@pytest.mark.parametrize("layernorm", ["pre", "post"])
def test_last_position_only_equals_every_position(layernorm):
    torch.manual_seed(0)
    model = Decoder(vocab=13, seq_len=4, width=16, layers=2, heads=4, layernorm=layernorm).double()
    tokens = torch.randint(0, 13, (9, 4))
    full = model(tokens, every_position=True)[:, -1]
    torch.testing.assert_close(model(tokens), full, rtol=0, atol=1e-12)


def plain_loop(study, cell, split):
    """One member alone: nn.Module, torch.optim.AdamW (or SGD) and LambdaLR warm-up, as the public
    code trains (teddykoker/grokking), with the same batch order; curves at the study's evaluation steps."""
    model = build_model(study, cell["model_seed"], cell["activation"], cell.get("init_scale", 1.0)).double()
    opt = study["optimizer"]
    if opt["name"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cell["lr"], momentum=opt["momentum"],
                                    nesterov=opt["nesterov"], weight_decay=cell["wd"])
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cell["lr"], betas=tuple(opt["betas"]),
                                      eps=opt["eps"], weight_decay=cell["wd"])
    warmup = opt["warmup_steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(s / warmup, 1))
    n, batch = len(split.y_train), study["batch_size"]
    per_epoch = -(-n // batch)
    checkpoints = set(eval_steps(0, study["budget"], study["eval"]))
    curves = {"val_acc": [], "train_loss": []}
    for step in range(1, study["budget"] + 1):
        epoch, position = divmod(step - 1, per_epoch)
        order = epoch_order(n, study["batch_seed"], cell["model_seed"], epoch)
        rows = order[position * batch:(position + 1) * batch]
        x = split.x_train[rows]
        noise = input_noise((len(rows), x.shape[1], study["model"]["width"]), cell.get("noise", 0.0),
                            study["batch_seed"], cell["model_seed"], step).double()
        loss = F.cross_entropy(model(x, noise) if cell.get("noise") else model(x), split.y_train[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step in checkpoints:
            with torch.no_grad():
                curves["val_acc"].append((model(split.x_val).argmax(-1) == split.y_val).double().mean().item())
                curves["train_loss"].append(F.cross_entropy(model(split.x_train), split.y_train).item())
    return curves


MODELS = {  # study changes: the transformer eager and compiled, the other architectures, SGD
    "eager": {}, "compiled": {},
    "mlp": {"model": {"architecture": "mlp", "width": 8, "hidden": 24}, "activations": ["relu"]},
    "lstm": {"model": {"architecture": "lstm", "width": 12}},
    "sgd_nesterov": {"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
                     "grid": {"lr": {"values": [0.03, 0.1]}, "wd": {"values": [1e-3]}}},
    "noise_init_scale": {"grid": {"lr": {"values": [1e-3]}, "wd": {"values": [1.0]}, "noise": {"values": [0, 0.5]},
                                  "init_scale": {"values": [0.5, 2.0]}}},
}


@pytest.mark.parametrize("variant", list(MODELS))
def test_a_member_trained_in_a_shard_equals_the_module_trained_alone_with_torch_optim(variant, monkeypatch):
    compiled = variant == "compiled"
    monkeypatch.setattr(modular_trainer, "COMPILE_FROM_EQUATIONS", 0)  # compile even this short run
    study = small_study(dtype="float64", loss_dtype="float64", **MODELS[variant])
    cells = study_cells(study)
    split = modular_split(study["p"], "add", 2, study["train_fraction"], 0)
    result = train_modular_shard(study, cells, {0: split}, EngineSettings(compile=compiled))
    for i in (0, 3):  # two members of four, with different lr and seeds
        cell = cells.iloc[i].to_dict()
        alone = plain_loop(study, cell, split)
        history = result.history[cell["cell_id"]]
        assert history["step"].tolist() == sorted(eval_steps(0, study["budget"], study["eval"]))
        torch.testing.assert_close(history["val_acc"].double(), torch.tensor(alone["val_acc"], dtype=torch.float64), rtol=0, atol=1e-6)
        torch.testing.assert_close(history["train_loss"].double(), torch.tensor(alone["train_loss"], dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)


def test_continuing_to_an_extended_budget_equals_one_run():
    study = small_study(budget=30, extended_budget=60)
    cells = study_cells(study)
    split = {0: modular_split(study["p"], "add", 2, study["train_fraction"], 0)}
    settings = EngineSettings(compile=False)
    whole = train_modular_shard(dict(study, budget=60), cells, split, settings)
    first = train_modular_shard(study, cells, split, settings)
    rest = train_modular_shard(dict(study, budget=60), cells, split, settings, resume=first.end_state)
    for cid in cells["cell_id"]:
        torch.testing.assert_close(rest.history[cid]["val_loss"], whole.history[cid]["val_loss"][-3:])


@pytest.mark.parametrize("changes, message", [
    ({"operation": "div", "p": 12}, "^p: 12 is not prime"),
    ({"arity": 3, "operation": "sub"}, "^operation: sub with arity 3"),
    ({"train_fraction": 0.001}, "^train_fraction: 0.001 of 121 equations leaves 0 to train"),
    ({"model": {"architecture": "mlp"}, "grid": {"lr": {"values": [1e-3]}, "wd": {"values": [1.0]}, "noise": {"values": [0.1]}}},
     "grid.noise is added to a transformer's input embeddings"),
    ({"budget": 65}, "^budget: 65 is not an evaluation step"),
    ({"activations": ["relu"]}, "^activations: \\['relu'\\]; only the mlp architecture takes relu"),
    ({"model": {"architecture": "lstm", "layernorm": "post"}}, "^model.layernorm: post is a transformer setting"),
])
def test_bad_modular_settings_name_their_key(changes, message):
    with pytest.raises(ConfigError, match=message.replace("^", "")):
        small_study(**changes)


def test_eval_rows_measures_a_fixed_sample_of_each_split():
    study = small_study(eval_rows=20, budget=20, eval={"strides": [{"every": 10, "until": 20}]})
    split = modular_split(study["p"], "add", 2, study["train_fraction"], 0)
    result = train_modular_shard(study, study_cells(study), {0: split}, EngineSettings(compile=False))
    for history in result.history.values():
        assert torch.equal(history["val_acc"] * 20, (history["val_acc"] * 20).round())
    assert set(result.metrics["final_val_acc"] * 20) <= set(range(21))


@pytest.mark.parametrize("architecture", ["mlp", "lstm"])
def test_other_architectures_record_no_attention_norms_and_name_themselves(architecture):
    from grokking.tasks import task_of

    study = small_study(budget=10, eval={"strides": [{"every": 10, "until": 10}]},
                        model={"architecture": architecture})
    split = modular_split(study["p"], "add", 2, study["train_fraction"], 0)
    result = train_modular_shard(study, study_cells(study), {0: split}, EngineSettings(compile=False))
    assert all("attn_norm" not in h and len(h["val_acc"]) == 1 for h in result.history.values())
    assert task_of(study).label(study) == f"x + y mod 11, {architecture.upper()}"


def test_optional_axes_name_their_cells_and_a_sample_is_a_seeded_subset():
    grid = {"lr": {"values": [1e-3, 1e-2]}, "wd": {"values": [0.1, 1.0]}, "noise": {"values": [0, 1]},
            "init_scale": {"values": [1, 10]}}
    cells = study_cells(small_study(grid=grid))
    assert len(cells) == 16 * 2 and list(cells.columns[3:5]) == ["noise", "init_scale"]
    assert cells["cell_id"].iloc[1] == "lr0.001_wd0.1_noise0_init10_d0_m0_gelu"
    sampled = study_cells(small_study(grid={**grid, "sample": {"n": 5, "seed": 3}}))
    assert len(sampled) == 10 and set(sampled["cell_id"]) <= set(cells["cell_id"])
    assert sampled.equals(study_cells(small_study(grid={**grid, "sample": {"n": 5, "seed": 3}})))
    assert "noise" not in study_cells(small_study()).columns  # lr x wd grids keep their ids and columns
    with pytest.raises(ConfigError, match="grid.sample.n: 17 points asked of a grid of 16"):
        small_study(grid={**grid, "sample": {"n": 17}})
    with pytest.raises(ConfigError, match="grid.init_scale.values\\[0\\]: 0 is not a valid initialization scale"):
        small_study(grid={**grid, "init_scale": {"values": [0]}})


def test_init_scale_multiplies_every_initial_parameter():
    study = small_study()
    plain, scaled = build_model(study, 3), build_model(study, 3, init_scale=10.0)
    for (name, a), b in zip(plain.state_dict().items(), scaled.state_dict().values()):
        torch.testing.assert_close(b, 10 * a, msg=name)


def test_save_weights_keeps_every_cells_final_parameters():
    study = small_study(budget=10, save_weights=True, eval={"strides": [{"every": 10, "until": 10}]})
    cells = study_cells(study)
    split = modular_split(study["p"], "add", 2, study["train_fraction"], 0)
    result = train_modular_shard(study, cells, {0: split}, EngineSettings(compile=False))
    weights = result.history[cells["cell_id"].iloc[2]]["final_params"]
    model = build_model(study, int(cells["model_seed"].iloc[2]))
    model.load_state_dict(weights)  # the member module's own names and shapes
    accuracy = (model(split.x_val).argmax(-1) == split.y_val).float().mean()
    torch.testing.assert_close(accuracy, result.history[cells["cell_id"].iloc[2]]["val_acc"][-1])


def test_a_sweep_expands_into_member_studies_and_figures_draw_them_all():
    config = validate_config({"engine": {}, "studies": {"bxn": {**SMALL, "sweep": {"p": [7, 11], "batch_size": [4, 8]}}},
                              "figures": {"f": {"kind": "curve_table", "studies": ["bxn"]}}})
    members = ["bxn_p7_b4", "bxn_p7_b8", "bxn_p11_b4", "bxn_p11_b8"]
    assert list(config["studies"]) == members and config["figures"]["f"]["studies"] == members
    assert config["studies"]["bxn_p11_b4"]["p"] == 11 and config["studies"]["bxn_p11_b4"]["batch_size"] == 4
    with pytest.raises(ConfigError, match="studies.bxn.sweep.p: a non-empty list of numbers"):
        validate_config({"engine": {}, "figures": {}, "studies": {"bxn": {**SMALL, "sweep": {"p": []}}}})
    with pytest.raises(ConfigError, match="studies.bxn_p12.p: 12 is not prime"):
        validate_config({"engine": {}, "figures": {}, "studies": {"bxn": {**SMALL, "operation": "div", "sweep": {"p": [12]}}}})
