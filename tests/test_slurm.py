"""The SLURM profile on a real SLURM: the smoke preset via sbatch, a GPU per shard job, same cells.

The cluster (tests/slurm_cluster.py) is one controller and one node on this machine with two GPUs
that SLURM schedules but that are empty files; torch therefore trains on the CPU inside each SLURM
job, which is all that is needed to check submission, grouping, GPU requests and results.
The profile is used as a user would: copied, with its partition placeholders filled in, plus the
flags that a cluster without an accounting database needs.
About two minutes on 2 busy cores, most of it Snakemake starting inside each SLURM job.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests import slurm_cluster
from tests.workflow_runner import copy_workflow, snakemake, start_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STUDIES = ("toy_cls", "toy_regr")
# Data, training and the cells tables: three rounds of SLURM jobs. Each round costs about half a
# minute here (Snakemake starts twice in every job, then squeue is polled), so the later rounds of
# the smoke DAG (phases, the rerun checkpoint, continued shards, figures: six more rounds, which
# pass with this profile too) are left out to keep the test at about two minutes.
TARGETS = [f"results/{study}/cells.csv" for study in STUDIES]
SMOKE = ("--configfile", "presets/smoke.yaml")  # last: --configfile takes a list
# No accounting database here: no account (plugin 2.8 accepts the flag but guesses anyway, fails
# quietly and submits without one), and job states must come from squeue, since the plugin would
# ask sacct. Logs of successful jobs are kept: they say which shards each SLURM job ran.
SLURM_FLAGS = (
    "--slurm-no-account",
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
)
GPU_RULES = ("train_shard", "continue_shard")  # continue_shard runs only for extended targets


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> slurm_cluster.SlurmCluster:
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="the SLURM executor plugin is missing: pip install -e '.[slurm]'")
    reason = slurm_cluster.ensure_installed()
    if reason:
        pytest.skip(reason)
    cluster = slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except slurm_cluster.ClusterUnavailable as why:
        pytest.skip(str(why))
    try:
        yield cluster
    finally:
        cluster.stop()


def fill_in_profile(profile: Path, partition: str) -> None:
    """What a user edits: the partition placeholders (this cluster has one partition for all)."""
    text = profile.read_text()
    assert "<cpu-partition>" in text and "<gpu-partition>" in text
    profile.write_text(text.replace("<cpu-partition>", partition)
                       .replace("<gpu-partition>", partition))


def jobs_run_by(slurm_job: dict[str, str], rule: str) -> list[tuple[str, str, int]]:
    """(study, shard, runtime) of every `rule` job that this SLURM job ran, from its log."""
    log = Path(slurm_job["StdOut"]).read_text()
    found = []
    for block in re.findall(rf"^rule {rule}:\n((?:    .*\n)+)", log, flags=re.M):
        study, shard = re.search(r"wildcards: study=(\w+), shard=(s\d+)", block).groups()
        found.append((study, shard, int(re.search(r"\bruntime=(\d+)", block)[1])))
    return found


def test_smoke_preset_on_slurm_matches_a_local_run(slurm, tmp_path):
    local = copy_workflow(tmp_path / "local")
    on_slurm = copy_workflow(tmp_path / "slurm")
    fill_in_profile(on_slurm / "profiles/slurm/profile.yaml", slurm.partition)

    # The local reference runs meanwhile on one core: the SLURM run mostly waits for its jobs.
    reference = start_snakemake(local, tmp_path / "local.out", "--cores", "1", *TARGETS, *SMOKE)
    run = snakemake(on_slurm, "--profile", "profiles/slurm", *SLURM_FLAGS, *TARGETS, *SMOKE)
    assert reference.wait(timeout=600) == 0, (tmp_path / "local.out").read_text()
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{slurm.logs()}"

    # Every job went through SLURM and finished there; the controller still knows them all.
    jobs = [job for job in slurm.jobs() if job.get("WorkDir") == str(on_slurm)]
    assert jobs and all(job["JobState"] == "COMPLETED" for job in jobs), jobs

    ran = {job["JobId"]: jobs_run_by(job, "train_shard") for job in jobs}
    ran = {job_id: shards for job_id, shards in ran.items() if shards}
    # 9 cells per study in shards of 5: s000 and s001 of each study, all trained inside SLURM.
    assert sorted(s[:2] for shards in ran.values() for s in shards) == [
        (study, f"s00{i}") for study in STUDIES for i in (0, 1)
    ]
    # Grouping: the four shards (at most 7 per submission) went to SLURM as one job.
    assert len(ran) == 1, ran
    for job_id, shards_of_job in ran.items():
        job = next(j for j in jobs if j["JobId"] == job_id)
        # One GPU for the submission; its shards ran one after another on it, so it asked for the
        # sum of their runtimes (minutes; SLURM writes HH:MM:SS).
        assert job["TresPerJob"] == "gres:gpu:1", job
        hours, minutes, _ = map(int, job["TimeLimit"].split(":"))
        assert 60 * hours + minutes == sum(s[2] for s in shards_of_job), job
    # Only the GPU rules asked for a GPU.
    for job in jobs:
        if not any(jobs_run_by(job, rule) for rule in GPU_RULES):
            assert "gpu" not in job.get("TresPerJob", ""), job

    # The same cells, the same numbers: SLURM changes where a shard runs, never its results.
    for study in STUDIES:
        pd.testing.assert_frame_equal(
            pd.read_csv(on_slurm / "results" / study / "cells.csv"),
            pd.read_csv(local / "results" / study / "cells.csv"),
        )
