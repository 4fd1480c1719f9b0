"""A training job killed half-way: nothing that looks finished is left, and Snakemake reruns it.

These run the real workflow (no SLURM needed): `python -m grokking train` under Snakemake, killed
with SIGKILL the way an out-of-memory killer or a node failure would end it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.workflow_runner import copy_workflow, snakemake, start_snakemake

SHARD = "results/toy_cls/shards/s000"
OUTPUTS = [f"{SHARD}.{ext}" for ext in ("metrics.csv", "history.pt", "state.pt")]
TRAIN_LOG = "logs/train_shard/toy_cls/s000.log"
# The smoke grid with a budget long enough to be killed in the middle: s000 holds the cells with
# lr 1e-4 and 1e-3, which do not converge early, so it trains all 2000 steps (tens of seconds on
# 2 busy cores, a few seconds on a fast machine; the kill waits for the first log line only).
LONGER = """\
studies:
  toy_cls:
    budget: 2000
    extended_budget: 4000
"""
CONFIG = ("--configfile", "presets/smoke.yaml", "longer.yaml")  # last: --configfile takes a list


def kill_training_when_started(workdir: Path, snakemake_proc: subprocess.Popen) -> None:
    """SIGKILL the `python -m grokking train` process once it has started its training loop."""
    deadline = time.monotonic() + 300
    log = workdir / TRAIN_LOG
    while time.monotonic() < deadline:
        if snakemake_proc.poll() is not None:
            raise AssertionError("snakemake ended before its training job could be killed")
        for child in psutil.Process(snakemake_proc.pid).children(recursive=True):
            try:
                cmdline = child.cmdline()
                if "grokking" not in cmdline or "train" not in cmdline:
                    continue
                # The shell truncates the log before python starts, so a log older than the
                # process is an earlier run's: wait for this process's "training ..." line.
                if (log.exists() and log.stat().st_mtime >= child.create_time() - 1
                        and "training" in log.read_text()):
                    time.sleep(1)  # well inside the loop: thousands of steps remain
                    child.send_signal(signal.SIGKILL)
                    return
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError("the training job never started")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    copy_workflow(tmp_path)
    (tmp_path / "longer.yaml").write_text(LONGER)
    return tmp_path


@pytest.mark.slow
def test_killed_training_leaves_no_finished_output_and_is_rerun(workdir):
    # 1. Kill the training process half-way; Snakemake's own process stays alive and records it.
    proc = start_snakemake(workdir, workdir / "run1.out", "--cores", "1", OUTPUTS[0], *CONFIG)
    kill_training_when_started(workdir, proc)
    assert proc.wait(timeout=300) != 0
    run1 = (workdir / "run1.out").read_text()
    assert "Error in rule train_shard" in run1, run1

    # 2. Nothing that Snakemake (or a reader) could take for a finished shard: no output file, and
    # at most the hidden temporary files of an interrupted atomic write.
    assert not [p for p in OUTPUTS if (workdir / p).exists()]
    leftovers = [p.name for p in (workdir / SHARD).parent.glob("*")]
    assert all(re.fullmatch(r"\..+\.tmp", name) for name in leftovers), leftovers

    # 3. A dry run wants exactly that job again.
    dry = snakemake(workdir, "-n", "--rerun-incomplete", OUTPUTS[0], *CONFIG)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "rule train_shard:" in dry.stdout
    assert "wildcards: study=toy_cls, shard=s000" in dry.stdout
    attempt1 = re.search(r"runtime=(\d+), mem_mb=(\d+)", dry.stdout)
    runtime1, mem1 = int(attempt1[1]), int(attempt1[2])

    # 4. The rerun, with one retry: its first attempt is killed as well, and the second attempt
    # runs with twice the memory and runtime (rules/train.smk scales both with the attempt).
    proc = start_snakemake(workdir, workdir / "run2.out", "--cores", "1", "--retries", "1",
                           "--rerun-incomplete", OUTPUTS[0], *CONFIG)
    kill_training_when_started(workdir, proc)
    assert proc.wait(timeout=600) == 0, (workdir / "run2.out").read_text()
    run2 = (workdir / "run2.out").read_text()
    assert "Trying to restart job" in run2, run2
    assert f"runtime={2 * runtime1}, mem_mb={2 * mem1}" in run2, run2

    metrics = pd.read_csv(workdir / OUTPUTS[0])
    assert len(metrics) == 5 and (metrics["steps_run"] <= 2000).all()
    assert (metrics["steps_run"] == 2000).any()  # it really trained the whole budget
    assert all((workdir / p).stat().st_size > 0 for p in OUTPUTS)
    assert "Nothing to be done" in snakemake(workdir, "-n", OUTPUTS[0], *CONFIG).stdout


def test_slurm_profile_asks_for_more_per_attempt(workdir):
    """Each retry asks SLURM for attempt x mem_mb and attempt x runtime, on the GPU partition."""
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="the SLURM executor plugin is missing: pip install -e '.[slurm]'")
    found = {}
    for attempt in (1, 2, 3):
        dry = snakemake(workdir, "-n", "--profile", "profiles/slurm", "--attempt", str(attempt),
                        OUTPUTS[0], *CONFIG)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        block = dry.stdout[dry.stdout.index("rule train_shard:"):]
        line = block.split("resources:")[1].split("\n")[0]
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", line))
        assert resources["gpu"] == "1" and resources["slurm_partition"] == "<gpu-partition>"
        found[attempt] = int(resources["mem_mb"]), int(resources["runtime"])
    assert found[2] == (2 * found[1][0], 2 * found[1][1])
    assert found[3] == (3 * found[1][0], 3 * found[1][1])
