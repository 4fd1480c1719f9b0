# Helpers shared by the rule files. Config validation, the grid of cells and shards, input functions.
import json
import math
import sys
from pathlib import Path

# The package lives in workflow/ (src layout). Make it importable here and in every job's shell (on
# SLURM nodes too), whether or not it was pip-installed, and inside a conda env.
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, PACKAGE_DIR)
shell.prefix(f"export PYTHONPATH='{PACKAGE_DIR}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")  # braces doubled twice: f-string, then Snakemake

from grokking.config import ConfigError, validate_config  # noqa: E402
from grokking.grid import study_shards, training_settings  # noqa: E402

try:
    _validated = validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

STUDIES = config["studies"]
ENGINE = config["engine"]
# Cells of every study with their shard: the one place where the grid is expanded.
SHARDS = {name: study_shards(study, ENGINE) for name, study in STUDIES.items()}

def figures_of_kind(kind):
    """Figures of one kind whose studies are all configured (presets may configure fewer)."""
    return [
        name
        for name, figure in config["figures"].items()
        if figure["kind"] == kind and all(s in STUDIES for s in figure["studies"])
    ]


PHASE_FIGURES = figures_of_kind("phases")
SMOOTH_FIGURES = figures_of_kind("smooth")

# Wildcard patterns (used by the Snakefile's wildcard_constraints).
STUDY_PATTERN = "|".join(STUDIES) or "no-study"
SHARD_PATTERN = r"s\d{3}"
FIGURE_PATTERN = "|".join(PHASE_FIGURES) or "no-figure"
SMOOTH_FIGURE_PATTERN = "|".join(SMOOTH_FIGURES) or "no-figure"


def get_all_figures():
    """PDF and PNG of every figure whose studies are all configured."""
    figures = PHASE_FIGURES + SMOOTH_FIGURES
    return expand("results/figures/{figure}.{ext}", figure=figures, ext=("pdf", "png"))


def shard_cells(study, shard):
    cells = SHARDS[study]
    return cells[cells["shard"] == shard].drop(columns="shard")


def get_shard_metrics(wildcards):
    shards = sorted(SHARDS[wildcards.study]["shard"].unique())
    return expand("results/{study}/shards/{shard}.metrics.csv", study=wildcards.study, shard=shards)


def get_data_spec(wildcards):
    """The settings that define a study's data (changing others never rebuilds it)."""
    study = STUDIES[wildcards.study]
    keys = ("task", "p", "train_size", "regression_dim", "data_seeds")
    return json.dumps({key: study[key] for key in keys}, sort_keys=True)


def get_train_spec(wildcards):
    """Everything a shard job needs, as JSON: training settings, engine settings, its cells.

    Only settings that change results are included, so Snakemake's params trigger re-trains a shard
    exactly when its results would change.
    """
    spec = {
        "study": training_settings(STUDIES[wildcards.study]),
        "engine": {key: ENGINE[key] for key in ("device", "compile", "check_every")},
        "cells": shard_cells(wildcards.study, wildcards.shard).to_dict(orient="records"),
    }
    return json.dumps(spec, sort_keys=True)


def get_train_mem_mb(wildcards, attempt):
    """Memory of a training job: < 1 GB for 441 toy members; doubled, tripled on retries."""
    return 2000 * attempt


def get_train_runtime(wildcards, attempt):
    """Minutes for a shard: its cell-steps at a conservative rate, plus compile time; grows per retry."""
    cells = len(shard_cells(wildcards.study, wildcards.shard))
    budget = STUDIES[wildcards.study]["budget"]
    seconds = cells * budget / (ENGINE["cell_steps_per_second"] * ENGINE["threads"])
    return attempt * (10 + math.ceil(seconds / 60))


def get_figure_phases(wildcards):
    studies = config["figures"][wildcards.figure]["studies"]
    return expand("results/{study}/phases.csv", study=studies)


def get_figure_titles(wildcards):
    studies = config["figures"][wildcards.figure]["studies"]
    return " ".join(f"'{s}: {STUDIES[s]['objective']}'" for s in studies)


def get_continue_spec(wildcards):
    """Training settings of a continuation: the study's, with the extended budget as its budget."""
    study = STUDIES[wildcards.study]
    settings = training_settings(study) | {"budget": study["extended_budget"]}
    engine = {key: ENGINE[key] for key in ("device", "compile", "check_every")}
    return json.dumps({"study": settings, "engine": engine}, sort_keys=True)


def get_continue_runtime(wildcards, attempt):
    """Minutes for a continuation, bounded by a whole shard running the extra steps."""
    study = STUDIES[wildcards.study]
    cells = len(shard_cells(wildcards.study, wildcards.shard))
    steps = study["extended_budget"] - study["budget"]
    seconds = cells * steps / (ENGINE["cell_steps_per_second"] * ENGINE["threads"])
    return attempt * (10 + math.ceil(seconds / 60))


def get_continued_metrics(wildcards):
    """Continuation results of the shards that hold cells to continue (known after the checkpoint)."""
    import pandas as pd

    reruns = pd.read_csv(checkpoints.select_reruns.get(study=wildcards.study).output[0])
    shards = sorted(reruns["shard"].unique())
    return expand("results/{study}/extended/{shard}.metrics.csv", study=wildcards.study, shard=shards)


def smooth_study(wildcards):
    return config["figures"][wildcards.smooth_figure]["studies"][0]


def get_smooth_inputs(wildcards):
    study = smooth_study(wildcards)
    return {
        "discrete": f"results/{study}/phases.csv",
        "smooth": f"results/{study}/phases_extended.csv",
        "changes": f"results/{study}/phase_changes.csv",
    }


def get_smooth_gap(wildcards):
    return STUDIES[smooth_study(wildcards)]["grokking_gap"]
