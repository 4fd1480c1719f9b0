"""Damaged files and awkward requests stop a job with one line that names the file or the study and
says how to recover, instead of a traceback or a silently wrong table."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from grokking import cli, io
from grokking.figures import KINDS as FIGURE_KINDS
from grokking.grid import cell_layout, study_shards
from tests.conftest import ROOT, load_config
from tests.workflow_runner import copy_workflow, env_without_venv, snakemake

STUDY = "toy_cls"


@pytest.fixture(scope="module")
def smoke() -> dict:
    return load_config("smoke")


def fake_metrics(cells: pd.DataFrame, shard: str, budget: int = 300) -> pd.DataFrame:
    """A shard's metrics table as the engine writes it: alternately memorization (T_val empty) and
    comprehension cells, none diverged."""
    metrics = cells.drop(columns="shard").reset_index(drop=True)
    metrics["budget"] = budget
    metrics["steps_run"] = budget
    metrics["t_train"] = 100
    metrics["t_val"] = pd.array([None if i % 2 == 0 else 200 for i in range(len(metrics))], dtype="Int64")
    metrics["final_train_acc"] = 1.0
    metrics["final_val_acc"] = 0.5
    metrics["diverged"] = False
    metrics["diverged_step"] = pd.array([None] * len(metrics), dtype="Int64")
    metrics["shard"] = shard
    return metrics


@pytest.fixture
def shard_tree(tmp_path: Path, smoke: dict) -> tuple[Path, list[Path], str]:
    """results/toy_cls/shards/*.metrics.csv of the smoke grid, and the layout aggregation gets."""
    shards = study_shards(smoke["studies"][STUDY], smoke["engine"])
    paths = []
    for shard, cells in shards.groupby("shard"):
        path = tmp_path / f"results/{STUDY}/shards/{shard}.metrics.csv"
        io.write_csv(fake_metrics(cells, shard), path)
        paths.append(path)
    layout = json.dumps(cell_layout(smoke["studies"][STUDY], smoke["engine"]))
    return tmp_path, paths, layout


def aggregate(paths: list[Path], layout: str, out: Path) -> None:
    cli.main(["aggregate", "--metrics", *map(str, paths), "--layout", layout, "--out", str(out)])


def exit_message(call, *args) -> str:
    """The one line a verb stops with (SystemExit's message, as printed to the job's log)."""
    with pytest.raises(SystemExit) as info:
        call(*args)
    message = str(info.value.code)
    assert "\n" not in message
    return message


def cut_last_line(path: Path) -> None:
    """Truncate a CSV in the middle of its last row, as a full disk or an interrupted copy would."""
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind("\n") + 12])


def drop_last_row(path: Path) -> None:
    """Truncate a CSV at a line boundary: a cell is gone and every remaining row is whole."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


def empty_diverged_field(path: Path) -> None:
    """An empty `diverged` in the first row (a memorization cell)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[0, "diverged"] = ""
    table.to_csv(path, index=False)


def empty_file(path: Path) -> None:
    path.write_text("")


def header_only(path: Path) -> None:
    path.write_text(path.read_text().splitlines()[0] + "\n")


DAMAGES = [cut_last_line, drop_last_row, empty_diverged_field, empty_file, header_only]


def test_intact_shards_aggregate(shard_tree):
    root, paths, layout = shard_tree
    aggregate(paths, layout, root / "cells.csv")
    assert len(pd.read_csv(root / "cells.csv")) == 9


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_damaged_shard_metrics_stop_aggregation(shard_tree, damage):
    root, paths, layout = shard_tree
    damage(paths[0])
    message = exit_message(aggregate, paths, layout, root / "cells.csv")
    assert str(paths[0]) in message and "delete it" in message and "shard s000 trains again" in message
    assert not (root / "cells.csv").exists()


def test_shard_metrics_from_another_grid_stop_aggregation(shard_tree, smoke):
    root, paths, _ = shard_tree
    wider = {**smoke["studies"][STUDY], "grid": {**smoke["studies"][STUDY]["grid"],
                                                 "wd": {"values": [0.0, 10.0, 20.0, 30.0]}}}
    layout = json.dumps(cell_layout(wider, smoke["engine"]))
    assert "cells are missing" in exit_message(aggregate, paths, layout, root / "cells.csv")


@pytest.fixture
def extended_tree(shard_tree) -> tuple[Path, list[str]]:
    """cells.csv, reruns.csv (the memorization cells) and their continued metrics, per shard."""
    root, paths, layout = shard_tree
    aggregate(paths, layout, root / "cells.csv")
    cells = pd.concat([pd.read_csv(p) for p in paths])
    reruns = cells[cells["t_val"].isna()][["cell_id", "lr", "wd", "data_seed", "model_seed", "activation",
                                           "shard"]]
    io.write_csv(reruns, root / "reruns.csv")
    continued = []
    for shard, group in reruns.groupby("shard"):
        path = root / f"results/{STUDY}/extended/{shard}.metrics.csv"
        io.write_csv(fake_metrics(group, shard, budget=600), path)
        continued.append(str(path))
    args = ["merge-extended", "--cells", str(root / "cells.csv"), "--reruns", str(root / "reruns.csv"),
            "--budget", "600", "--out", str(root / "cells_extended.csv"), "--continued", *continued]
    return root, args


def test_intact_continuations_merge(extended_tree):
    root, args = extended_tree
    cli.main(args)
    assert (pd.read_csv(root / "cells_extended.csv")["budget"] == 600).all()


@pytest.mark.parametrize("damage", [drop_last_row, empty_diverged_field], ids=lambda f: f.__name__)
def test_damaged_continued_metrics_stop_the_merge(extended_tree, damage):
    root, args = extended_tree
    path = Path(args[-1])
    damage(path)
    message = exit_message(cli.main, args)
    assert str(path) in message and "delete it" in message and "continuation of shard" in message


# ----------------------------------------------------------------------- saved states (item 7)
def truncated_copy(obj, path: Path, keep: float = 0.5) -> Path:
    io.save_torch(obj, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_torch_file_is_named(tmp_path, keep):
    path = truncated_copy({"x": torch.zeros(100)}, tmp_path / "results/toy_cls/shards/s001.history.pt", keep)
    with pytest.raises(io.DamagedFileError) as info:
        io.load_torch(path)
    assert str(path) in str(info.value) and "shard s001 trains again" in str(info.value)


def test_truncated_state_stops_the_continuation_with_the_file_named(extended_tree):
    root, _ = extended_tree
    reruns = pd.read_csv(root / "reruns.csv")
    state = truncated_copy({"cell_ids": list(reruns["cell_id"]), "step": 300},
                           root / f"results/{STUDY}/shards/s000.state.pt")
    args = ["continue", "--spec", json.dumps({"study": {}, "engine": {}}), "--data", "missing.pt",
            "--resume", str(state), "--reruns", str(root / "reruns.csv"), "--shard", "s000",
            "--metrics", "m.csv", "--history", "h.pt", "--state", "s.pt"]
    message = exit_message(cli.main, args)
    assert str(state) in message and "delete it" in message and "shard s000 trains again" in message


def test_state_without_the_cells_to_continue_is_named(extended_tree):
    root, _ = extended_tree
    state = root / f"results/{STUDY}/shards/s000.state.pt"
    io.save_torch({"cell_ids": ["lr1_wd0_d42_m102_tanh"], "step": 300}, state)
    args = ["continue", "--spec", json.dumps({"study": {}, "engine": {}}), "--data", "missing.pt",
            "--resume", str(state), "--reruns", str(root / "reruns.csv"), "--shard", "s000",
            "--metrics", "m.csv", "--history", "h.pt", "--state", "s.pt"]
    message = exit_message(cli.main, args)
    assert str(state) in message and "no saved state for" in message


# ------------------------------------------------------------------ the workflow's requests
SMOKE = ("--configfile", "presets/smoke.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def plot_commands(stdout: str) -> dict[str, list[str]]:
    """Figure output -> the arguments of its `python -m grokking plot ...` command, from `-n -p`."""
    commands = {}
    for line in stdout.splitlines():
        if line.startswith("Shell command: ") and " grokking plot " in line:
            words = shlex.split(line.removeprefix("Shell command: "))
            words = words[words.index("grokking") + 1: words.index(">")]
            commands[words[words.index("--pdf") + 1]] = words
    return commands


def test_every_figure_kind_runs_without_a_title(workdir):
    """`title` is optional (default ""): every plot command must still parse, with the empty title,
    and a title with a quote in it must arrive whole."""
    figures = yaml.safe_load((ROOT / "config.yaml").read_text())["figures"]
    titles = {name: {"title": ""} for name in figures}
    titles["fig3_toy_cls_smooth"]["title"] = "Fig. 3's 'smooth'"
    (workdir / "untitled.yaml").write_text(yaml.safe_dump({"figures": titles}))
    dry = snakemake(workdir, "-n", "-p", *SMOKE, "untitled.yaml", check=True)
    commands = plot_commands(dry.stdout)
    assert len(commands) == len(figures)
    kinds = set()
    for pdf, words in commands.items():
        try:
            args = cli.build_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"the command of {pdf} does not parse: {shlex.join(words)}")
        kinds.add(args.kind)
        assert json.loads(args.options)["title"] == titles[Path(pdf).stem]["title"], pdf
    assert kinds == set(FIGURE_KINDS)  # every kind of figure
    fig1 = cli.build_parser().parse_args(commands["results/figures/fig1_toy_phases.pdf"])
    assert json.loads(fig1.options)["titles"] == ["toy_cls: classification", "toy_regr: regression"]
    assert fig1.input == ["phases=results/toy_cls/phases.csv", "phases=results/toy_regr/phases.csv"]


def test_extended_results_of_a_study_without_extended_budget_are_explained(workdir):
    dry = snakemake(workdir, "-n", *SMOKE, "--", "results/toy_cls_seeds/phases_extended.csv")
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0
    assert "study toy_cls_seeds has no extended_budget" in output, output
    assert "Dpath" not in output


def test_jobs_run_on_the_interpreter_snakemake_runs_on(workdir):
    """The venv's snakemake called by its path, the venv not activated: jobs must not pick up
    another `python` from PATH."""
    venv_snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run([str(venv_snakemake), "--cores", "1", *SMOKE, "--", "results/toy_cls/dataset.pt"],
                          cwd=workdir, env=env_without_venv(), capture_output=True, text=True, timeout=300)
    log = workdir / "logs/prepare_study_data/toy_cls.log"
    assert proc.returncode == 0, proc.stdout + proc.stderr + (log.read_text() if log.exists() else "")
    assert (workdir / "results/toy_cls/dataset.pt").stat().st_size > 0
