"""Run the real Snakemake workflow from tests: copy it into a scratch directory and call it there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow", "presets", "envs", "profiles")


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow, so tests never touch the checkout's results/."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def snakemake_env() -> dict[str, str]:
    # As after `source .venv/bin/activate`: the interpreter running the tests first on PATH.
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def env_without_venv() -> dict[str, str]:
    """As for a user who calls .venv/bin/snakemake by its path without activating the venv: the
    interpreter's directory is not on PATH (the `python` found there, if any, lacks torch)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = dict(os.environ, PATH=path)
    env.pop("VIRTUAL_ENV", None)
    return env


def snakemake(workdir: Path, *args: str, check: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake to completion; with ``check`` a failure raises with its whole output."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                          env=snakemake_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_snakemake(workdir: Path, out: Path, *args: str) -> subprocess.Popen:
    """Start snakemake in the background, its output going to ``out``."""
    with open(out, "w") as stream:
        return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                                env=snakemake_env(), stdout=stream, stderr=subprocess.STDOUT)
