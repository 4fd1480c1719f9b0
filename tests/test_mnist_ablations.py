"""003 Table 3 and Omnigrok on MNIST: each per-cell option of a shard against a plain PyTorch loop
(Omnigrok's notebooks written out: nn.Sequential, torch.optim, torchvision transforms), shards
that do not change a cell, continuations, the config's checks, and the tables and figures."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from grokking.ablation_plots import (
    change_curves_figure, change_table, differences, lu_figure, lu_table, row_settings, scale_sweep_figure,
    scale_table, table_markdown, write_table_files,
)
from grokking.config import ConfigError, validate_config
from grokking.grid import cell_id, study_cells
from grokking.mnist import MnistData, prepare_mnist, raw_folder
from grokking.mnist_ablations import Augmentation, MixedOptimizer, step_seed
from grokking.mnist_reference import omnigrok_reference_run
from grokking.optim import BatchedAdamW
from grokking.tasks.mnist_trainer import train_mnist_shard
from grokking.trainer import EngineSettings
from tests.conftest import ROOT, load_config, study_with

SHARED_ROOT = (ROOT / ".." / "shared" / "data").resolve()
EAGER = EngineSettings(device="cpu", compile=False, check_every=10)
STEPS = 30
SCHEDULE = {"strides": [{"every": 10, "until": STEPS}], "every_after": 10}

needs_mnist = pytest.mark.skipif(not raw_folder(SHARED_ROOT).exists(), reason="no MNIST files here")


@pytest.fixture(scope="module")
def data():
    """200 training images of the report's seed-0 draw and the first 500 test images: fast steps
    and evaluations, the real pixels."""
    torch.set_num_threads(1)
    full = prepare_mnist(SHARED_ROOT, data_seed=0, subset_size=200, download=False)
    return MnistData(full.data_seed, full.indices, full.train_images, full.train_labels,
                     full.val_images[:500], full.val_labels[:500])


def omnigrok_study(**overrides) -> dict:
    """Omnigrok's MNIST setting (one lr 1e-3 for all parameters) on the small data, never converging
    (threshold 0.99) so every member's end state is kept for the comparison."""
    settings = dict(budget=STEPS, init_scale=8.0, batch_size=50, subset_size=200, threshold=0.99,
                    eval=SCHEDULE, stop_early=False)
    return study_with(load_config(), "mnist", **{**settings, **overrides})


def make_cells(rows: list[dict]) -> pd.DataFrame:
    """Cells with every per-cell axis, as a pairwise grid with all of them makes them."""
    return pd.DataFrame([{"cell_id": cell_id(r["lr"], r["wd"], 0, 0, "relu", init_scale=r["init_scale"],
                                             augment=r["augment"], loss=r["loss"], optimizer=r["optimizer"]),
                          **r, "data_seed": 0, "model_seed": 0, "activation": "relu"} for r in rows])


BASE = dict(lr=1e-3, wd=0.01, init_scale=8.0, augment=0.0, loss="mse", optimizer="adamw")
# One shard holding every change of Table 3 that shares the batches, and one that combines several.
ROWS = [BASE, {**BASE, "loss": "cross_entropy"}, {**BASE, "optimizer": "adam"}, {**BASE, "optimizer": "sgd"},
        {**BASE, "augment": 0.3}, {**BASE, "augment": 1.0}, {**BASE, "wd": 0.0}, {**BASE, "init_scale": 0.1},
        {**BASE, "wd": 0.0, "init_scale": 0.5, "loss": "cross_entropy", "optimizer": "adam", "augment": 0.2}]
LAYERS = (1, 3, 5)  # the Linear modules of the reference nn.Sequential


def assert_member_matches(result, cid: str, ref, rtol: float = 1e-9) -> None:
    """End parameters, T values, final accuracies and the curves of one member against the loop."""
    state = result.end_state
    i = state["cell_ids"].index(cid)
    for k, layer in enumerate(LAYERS):
        module = ref.model[layer]
        torch.testing.assert_close(state["params"][f"w{k}"][i], module.weight.detach().T, rtol=rtol, atol=1e-12)
        torch.testing.assert_close(state["params"][f"b{k}"][i, 0], module.bias.detach(), rtol=rtol, atol=1e-12)
    row = result.metrics.set_index("cell_id").loc[cid]
    assert row.final_train_acc == pytest.approx(ref.train_acc, abs=1e-12)
    assert row.final_val_acc == pytest.approx(ref.val_acc, abs=1e-12)
    history = result.history[cid]
    assert history["step"].tolist() == ref.history["step"]
    for key in ("train_acc", "val_acc", "train_loss", "val_loss", "param_norm"):
        np.testing.assert_allclose(history[key].numpy(), ref.history[key], rtol=1e-6, err_msg=key)


# ----------------------------------------------------------------------------- against the loop
@needs_mnist
def test_every_member_of_a_mixed_shard_matches_its_plain_torch_loop(data):
    """Loss, optimizer, augmentation, weight decay and init scale changed per member, in one shard."""
    study = omnigrok_study()
    result = train_mnist_shard(study, make_cells(ROWS), data, EAGER)
    for r, cid in zip(ROWS, make_cells(ROWS)["cell_id"]):
        ref = omnigrok_reference_run(study, data, r["lr"], r["wd"], STEPS, init_scale=r["init_scale"], loss=r["loss"],
                                     optimizer=r["optimizer"], augment=r["augment"])
        assert_member_matches(result, cid, ref)


@needs_mnist
def test_constrained_norm_matches_omnigroks_rescaling_and_holds_the_initial_norm(data):
    """Omnigrok's landscape setting: AdamW without weight decay, batch 100, norm held at alpha |w_0|."""
    study = omnigrok_study(constrain_norm=True, batch_size=100)
    rows = [{**BASE, "wd": 0.0, "init_scale": a} for a in (0.3, 1.0, 4.0)] + [
        {**BASE, "wd": 0.0, "init_scale": 2.0, "optimizer": "sgd", "loss": "cross_entropy"}]
    result = train_mnist_shard(study, make_cells(rows), data, EAGER)
    for r, cid in zip(rows, make_cells(rows)["cell_id"]):
        ref = omnigrok_reference_run(study, data, r["lr"], r["wd"], STEPS, init_scale=r["init_scale"], loss=r["loss"],
                                     optimizer=r["optimizer"])
        assert_member_matches(result, cid, ref)
        norms = result.history[cid]["param_norm"].numpy()
        np.testing.assert_allclose(norms, norms[0], rtol=1e-6)  # held, every evaluation
    # |w_0| scales with alpha: the held norms are in the ratio of the init scales
    held = [float(result.history[cid]["param_norm"][-1]) for cid in make_cells(rows)["cell_id"][:3]]
    assert held[1] / held[0] == pytest.approx(1.0 / 0.3, rel=1e-6)


# ----------------------------------------------------------------------------- shards and continuations
@needs_mnist
def test_a_cell_trains_the_same_alone_and_in_a_mixed_shard(data):
    """Bitwise: neither the other members' loss, optimizer or augmentation nor their number changes
    a member (an AdamW member of a mixed shard takes the mixed update, alone the report's AdamW)."""
    study = omnigrok_study()
    together = train_mnist_shard(study, make_cells(ROWS), data, EAGER)
    for r in (BASE, ROWS[1], ROWS[4], ROWS[-1]):
        alone = train_mnist_shard(study, make_cells([r]), data, EAGER)
        cid = alone.metrics["cell_id"].iloc[0]
        i = together.end_state["cell_ids"].index(cid)
        for name, value in alone.end_state["params"].items():
            assert torch.equal(value[0], together.end_state["params"][name][i]), (cid, name)
        for key, value in alone.history[cid].items():
            assert torch.equal(value, together.history[cid][key]), (cid, key)


@needs_mnist
def test_continuing_a_mixed_constrained_shard_equals_one_uninterrupted_run(data):
    study = omnigrok_study(constrain_norm=True, budget=20, eval={"strides": [{"every": 10, "until": 20}],
                                                                 "every_after": 10})
    cells = make_cells([ROWS[1], ROWS[3], ROWS[4]])
    first = train_mnist_shard(study, cells, data, EAGER)
    longer = {**study, "budget": 40}
    continued = train_mnist_shard(longer, cells, data, EAGER, resume=first.end_state)
    whole = train_mnist_shard(longer, cells, data, EAGER)
    pd.testing.assert_frame_equal(continued.metrics, whole.metrics)
    for key in ("params", "exp_avg", "exp_avg_sq"):
        for name, value in whole.end_state[key].items():
            assert torch.equal(continued.end_state[key][name], value), (key, name)


def test_the_mixed_optimizer_follows_torch_for_each_kind_and_leaves_with_its_members():
    """Two groups, three kinds, a compaction: each member against its own torch optimizer, bitwise."""
    torch.manual_seed(0)
    kinds = ["adamw", "adam", "sgd", "adamw"]
    lr = {"a": torch.tensor([1e-2, 2e-2, 5e-2, 1e-3], dtype=torch.float64),
          "b": torch.tensor([3e-3, 1e-3, 1e-1, 1e-2], dtype=torch.float64)}
    wd = {"a": torch.tensor([0.1, 0.2, 0.3, 0.0], dtype=torch.float64), "b": torch.tensor([1.0, 0.0, 0.01, 0.5],
                                                                                          dtype=torch.float64)}
    params = {"w": torch.randn(4, 3, 2, dtype=torch.float64), "v": torch.randn(4, 1, 5, dtype=torch.float64)}
    refs = [{n: p[m].clone().requires_grad_() for n, p in params.items()} for m in range(4)]
    torch_opts = [{"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[k](
        [{"params": [ref["w"]], "lr": float(lr["a"][m]), "weight_decay": float(wd["a"][m])},
         {"params": [ref["v"]], "lr": float(lr["b"][m]), "weight_decay": float(wd["b"][m])}])
        for m, (k, ref) in enumerate(zip(kinds, refs))]
    mixed = MixedOptimizer(params, {"a": ("w",), "b": ("v",)}, lr, wd, kinds, compile=False)
    alive = [0, 1, 2, 3]
    for step in range(6):
        grads = {n: torch.randn_like(p) for n, p in mixed.params.items()}
        mixed.step(grads)
        for row, m in enumerate(alive):
            for n in ("w", "v"):
                refs[m][n].grad = grads[n][row].clone()
            torch_opts[m].step()
            for n in ("w", "v"):
                assert torch.equal(mixed.params[n][row], refs[m][n].detach()), (step, kinds[m], n)
        if step == 2:  # the Adam member leaves
            keep = torch.tensor([0, 2, 3])
            mixed.select({n: p.index_select(0, keep) for n, p in mixed.params.items()}, keep)
            alive = [0, 2, 3]


def test_an_adamw_only_shard_keeps_the_reports_optimizer():
    """Studies without the new axes train exactly as before: the report's batched AdamW."""
    from grokking.tasks.mnist_trainer import MnistShardTrainer

    study = omnigrok_study()
    cells = pd.DataFrame([{"cell_id": cell_id(1e-3, 0.01, 0, 0, "relu"), "lr": 1e-3, "wd": 0.01, "data_seed": 0,
                           "model_seed": 0, "activation": "relu"}])
    tiny = MnistData(0, torch.arange(4), torch.zeros(4, 784, dtype=torch.uint8), torch.arange(4),
                     torch.zeros(4, 784, dtype=torch.uint8), torch.arange(4))
    trainer = MnistShardTrainer(study, cells, tiny, EAGER)
    assert type(trainer.optimizer) is BatchedAdamW and trainer.norm_constraint is None
    assert not trainer.augmentations and not trainer.any_cross_entropy


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_is_rotation_then_blur_seeded_by_step_and_leaves_the_global_generator_alone():
    from torchvision.transforms import v2

    torch.manual_seed(123)
    images = torch.rand(6, 784, dtype=torch.float64)
    before = torch.get_rng_state()
    aug = Augmentation(0.5, seed=7)
    once, again = aug(images, step=3), aug(images, step=3)
    assert torch.equal(once, again) and not torch.equal(once, aug(images, step=4))
    assert not torch.equal(once, Augmentation(0.5, seed=8)(images, step=3))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(step_seed(7, 3))
    angle = v2.RandomRotation(15.0).make_params([])["angle"]
    assert -15 <= angle <= 15
    expected = v2.functional.gaussian_blur(v2.functional.rotate(images.reshape(-1, 1, 28, 28), angle),
                                           [3, 3], [0.25, 0.25])
    torch.testing.assert_close(once, expected.reshape(6, 784), rtol=0, atol=1e-7)  # sigma drawn in float32
    with pytest.raises(ValueError, match="not > 0"):
        Augmentation(0.0, seed=0)


# ----------------------------------------------------------------------------- config
def test_the_shipped_table_3_maps_each_row_to_one_cell_in_the_reports_order():
    config = load_config()
    spec = config["figures"]["p003_table3_mnist_changes"]
    from grokking.figures.change_table import rows

    table = rows(spec, config["studies"])
    assert len(table) == 17 and table[0]["report"] is True
    base = config["studies"][table[0]["study_name"]]
    assert (base["init_scale"], base["batch_size"], base["subset_size"], base["dtype"], base["budget"]) == (
        8.0, 200, 1000, "float64", 100000)
    base_row = row_settings(base, study_cells(base).set_index("cell_id").loc[table[0]["cell_id"]])
    changed = {}
    for row in table:
        study = config["studies"][row["study_name"]]
        cell = study_cells(study).set_index("cell_id").loc[row["cell_id"]]
        changed[row["change"]] = differences(base_row, row_settings(study, cell))
    assert list(changed.values())[0] == ""
    assert all(text and ";" not in text for text in list(changed.values())[1:]), changed  # one change each


@pytest.mark.parametrize("override,message", [
    ({"grid": {"lr": {"values": [1e-3]}, "wd": {"values": [0.01]}, "loss": {"values": ["hinge"]}}},
     "config error at studies.mnist.grid.loss.values.0: 'hinge' is not one of"),
    ({"grid": {"lr": {"values": [1e-3]}, "wd": {"values": [0.01]}, "augment": {"values": [-0.1]}}},
     "config error at studies.mnist.grid.augment.values[0]: -0.1 is not a valid augmentation strength"),
    ({"grid": {"lr": {"values": [1e-3]}, "wd": {"values": [0.01]}, "optimizer": {"values": ["rmsprop"]}}},
     "config error at studies.mnist.grid.optimizer.values.0: 'rmsprop' is not one of"),
    ({"grid": {"pairwise": True, "lr": {"values": [1e-3, 1e-3]}, "wd": {"values": [0.01, 0.0]},
               "optimizer": {"values": ["sgd"]}}},
     "config error at studies.mnist.grid.pairwise: lr has 2, wd has 2, optimizer has 1 values"),
    ({"constrain_norm": "yes"}, "config error at studies.mnist.constrain_norm: 'yes' is not of type 'boolean'"),
])
def test_bad_ablation_settings_stop_with_one_clear_line(override, message):
    raw = load_raw()
    raw["studies"]["mnist"].update(override)
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert str(info.value).startswith(message), str(info.value)


def test_a_change_table_needs_one_change_per_cell():
    raw = load_raw()
    raw["figures"]["p003_table3_mnist_changes"]["changes"].pop()
    with pytest.raises(ConfigError, match=r"^config error at figures\.p003_table3_mnist_changes\.changes: 16 "
                                          r"changes for the 17 cells"):
        validate_config(raw)
    raw = load_raw()
    raw["figures"]["fig1_toy_phases"]["changes"] = [{"change": "x"}] * 882
    with pytest.raises(ConfigError, match=r"figures\.fig1_toy_phases\.changes: only change_table and "
                                          r"change_curves figures take one"):
        validate_config(raw)


def test_a_batch_larger_than_the_subset_is_the_whole_subset():
    from grokking.mnist import batches

    config = load_raw()
    config["studies"]["mnist"]["batch_size"] = 1024
    assert validate_config(config)["studies"]["mnist"]["batch_size"] == 1024
    order = batches(1000, 1024, seed=0)
    first, second = next(order), next(order)
    assert len(first) == len(second) == 1000 and not torch.equal(first, second)


def load_raw() -> dict:
    import yaml

    return copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))


# ----------------------------------------------------------------------------- tables and figures
def fake_cells(rows: list[dict], t: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells = make_cells(rows)
    cells["t_train"] = pd.array([a for a, _ in t], dtype="Int64")
    cells["t_val"] = pd.array([b for _, b in t], dtype="Int64")
    cells["final_train_acc"], cells["final_val_acc"], cells["budget"] = 1.0, 0.9, 1000
    gap = cells["t_val"] - cells["t_train"]
    phase = np.where(cells["t_train"].isna(), "confusion", np.where(cells["t_val"].isna(), "memorization",
                     np.where(gap.fillna(0) >= 100, "grokking", "comprehension")))
    return cells, pd.DataFrame({"cell_id": cells["cell_id"], "phase": phase})


def test_change_table_reads_phases_and_compares_with_the_report(tmp_path):
    rows = [BASE, {**BASE, "loss": "cross_entropy"}, {**BASE, "augment": 0.2}]
    cells, phases = fake_cells(rows, [(10, 500), (10, 20), (10, None)])
    study = omnigrok_study()
    changes = [{"study": 0, "study_name": "s", "cell_id": c, "change": name, "report": verdict, "comment": ""}
               for c, name, verdict in zip(cells["cell_id"], ["base", "CE", "aug 0.2"], [True, False, True])]
    table = change_table(changes, [cells], [phases], [study])
    assert table["grokked"].tolist() == [True, False, False]
    assert table["agrees"].tolist() == [True, True, False]
    assert table["delay"].tolist()[:2] == [490, 10] and pd.isna(table["delay"].iloc[2])
    assert table["differs_from_base"].tolist() == ["", "cross-entropy loss", "augmentation sigma 0.2"]
    markdown = table_markdown(table, "Table 3")
    assert markdown.count("\n| ") == 4 and "| aug 0.2 | no | memorization | 10 | — | — |" in markdown
    write_table_files(table, tmp_path / "t.png", "Table 3")
    assert pd.read_csv(tmp_path / "t.csv")["agrees"].tolist() == [True, True, False]
    histories = [{"step": torch.tensor([0, 10, 100]), "train_acc": torch.tensor([0.1, 0.5, 1.0]),
                  "val_acc": torch.tensor([0.1, 0.3, 0.9]), "train_loss": torch.tensor([1.0, 0.5, 0.1]),
                  "val_loss": torch.tensor([1.0, 0.7, 0.3])}] * 3
    change_curves_figure(table, histories, tmp_path / "c.pdf", tmp_path / "c.png", title="curves")
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_scale_and_lu_tables_and_figures(tmp_path):
    rows = [{**BASE, "init_scale": a} for a in (0.1, 1.0, 10.0)]
    cells, _ = fake_cells(rows, [(5, 8), (5, None), (None, None)])
    table = scale_table(cells, omnigrok_study())
    assert table["init_scale"].tolist() == [0.1, 1.0, 10.0] and table["delay"].tolist()[0] == 3
    scale_sweep_figure([table], ["alpha"], [omnigrok_study()], tmp_path / "s.pdf", tmp_path / "s.png", title="t")
    lu = lu_table([cells, cells.assign(final_val_acc=0.5)], [{"subset_size": 100, "init_scale": 8.0},
                                                            {"subset_size": 10, "init_scale": 8.0}])
    assert lu["subset_size"].tolist() == [10, 10, 10, 100, 100, 100]
    lu_figure(lu, tmp_path / "l.pdf", tmp_path / "l.png", title="LU")
    assert (tmp_path / "l.png").stat().st_size > 10_000 and (tmp_path / "s.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="two runs at training-set size 10"):
        lu_table([cells, cells], [{"subset_size": 10, "init_scale": 8.0}] * 2)


def test_a_continued_cell_keeps_its_per_cell_options():
    """Extended-budget reruns train the cells of reruns.csv: their init scale, augmentation, loss and
    optimizer must travel with them."""
    from grokking.tables import select_reruns

    cells = make_cells([{**BASE, "optimizer": "sgd", "augment": 0.2}, BASE]).assign(diverged=False, shard="s000")
    phases = pd.DataFrame({"cell_id": cells["cell_id"], "phase": ["memorization", "comprehension"]})
    chosen = select_reruns(cells, phases)
    assert len(chosen) == 1
    assert chosen[["init_scale", "augment", "loss", "optimizer"]].iloc[0].tolist() == [8.0, 0.2, "mse", "sgd"]
