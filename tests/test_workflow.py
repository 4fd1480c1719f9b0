"""The real Snakemake DAG: lint, dry runs, config errors and the smoke preset end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow", "presets", "envs")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # Jobs run `python -m grokking`: the interpreter running the tests must be first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / name)
    return tmp_path


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_of_the_paper_config_lists_fig1(workdir):
    proc = snakemake(workdir, "-n")
    assert "results/figures/fig1_toy_phases.pdf" in proc.stdout
    assert proc.stdout.count("rule train_shard:") == 42  # 2 diagrams x 21 shards of 21 cells


def test_bad_config_stops_with_one_clear_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  toy_cls:\n    budget: -5\n")
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "config error at studies.toy_cls.budget: -5 is less than the minimum of 1" in (
        proc.stdout + proc.stderr
    )


@pytest.mark.slow
def test_smoke_preset_end_to_end(workdir):
    snakemake(workdir, "--cores", "2", "--configfile", "presets/smoke.yaml")
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
    assert "Nothing to be done" in snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml").stdout
