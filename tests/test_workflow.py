"""The real Snakemake DAG: lint, dry runs, config errors and the smoke preset end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.workflow_runner import copy_workflow, snakemake


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_of_the_paper_config_lists_fig1(workdir):
    proc = snakemake(workdir, "-n", check=True)
    assert "results/figures/fig1_toy_phases.pdf" in proc.stdout
    assert proc.stdout.count("rule train_shard:") == 42  # 2 diagrams x 21 shards of 21 cells


def test_bad_config_stops_with_one_clear_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  toy_cls:\n    budget: -5\n")
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "config error at studies.toy_cls.budget: -5 is less than the minimum of 1" in (
        proc.stdout + proc.stderr
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The whole smoke DAG, built once for the tests that inspect it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, "--cores", "2", "--configfile", "presets/smoke.yaml", check=True)
    return workdir


@pytest.mark.slow
def test_smoke_preset_end_to_end(smoke_run):
    workdir = smoke_run
    for ext in ("pdf", "png"):
        assert (workdir / f"results/figures/fig1_toy_phases.{ext}").stat().st_size > 10_000
    for study in ("toy_cls", "toy_regr"):
        cells = pd.read_csv(workdir / f"results/{study}/cells.csv")
        phases = pd.read_csv(workdir / f"results/{study}/phases.csv")
        assert len(cells) == len(phases) == 9
        assert set(phases["phase"]) <= {"comprehension", "grokking", "memorization", "confusion"}
        assert (cells["steps_run"] <= 300).all()
        assert (workdir / f"logs/train_shard/{study}/s000.log").read_text().count("cell-steps/s")
    # Nothing left to do: the DAG is complete and up to date.
    assert "Nothing to be done" in snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml", check=True).stdout


def dry_run_jobs(workdir: Path, *configfiles: str) -> list[str]:
    """The rule names of the jobs a dry run would execute, one entry per job (the target rule
    `all` aside, which runs whenever anything does)."""
    stdout = snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml", *configfiles,
                       check=True).stdout
    return [rule for rule in re.findall(r"^rule (\w+):$", stdout, flags=re.MULTILINE) if rule != "all"]


@pytest.mark.slow
def test_smoke_builds_extended_figures_and_reruns_only_what_changed(smoke_run):
    workdir = smoke_run
    for figure in ("fig3_toy_cls_smooth", "fig4_toy_regr_smooth"):
        assert (workdir / f"results/figures/{figure}.png").stat().st_size > 10_000
    for study in ("toy_cls", "toy_regr"):
        results = workdir / "results" / study
        phases = pd.read_csv(results / "phases.csv").merge(pd.read_csv(results / "cells.csv"))
        not_converged = phases[phases["phase"].isin(["memorization", "confusion"]) & ~phases["diverged"]]
        continued = pd.concat([pd.read_csv(p) for p in (results / "extended").glob("*.metrics.csv")])
        assert set(pd.read_csv(results / "reruns.csv")["cell_id"]) == set(not_converged["cell_id"])
        assert set(continued["cell_id"]) == set(not_converged["cell_id"])
        assert len(not_converged) > 0  # otherwise this test checks nothing
        extended = pd.read_csv(results / "cells_extended.csv")
        assert len(extended) == len(phases) and (extended["budget"] == 600).all()
        assert extended["steps_run"].max() > 300

    # A plotting option re-runs that figure's rule and nothing else.
    (workdir / "retitle.yaml").write_text("figures:\n  fig3_toy_cls_smooth:\n    title: renamed\n")
    assert dry_run_jobs(workdir, "retitle.yaml") == ["plot_smooth_diagram"]

    # A longer extended budget re-runs the continuations and what follows them, never a base training.
    (workdir / "longer.yaml").write_text("studies:\n  toy_cls:\n    extended_budget: 900\n")
    jobs = dry_run_jobs(workdir, "longer.yaml")
    assert "continue_shard" in jobs and "plot_smooth_diagram" in jobs
    assert not {"train_shard", "prepare_toy_data", "aggregate_study", "plot_phase_diagram"} & set(jobs)
    assert jobs.count("plot_smooth_diagram") == 1  # fig3 only: toy_regr is untouched
