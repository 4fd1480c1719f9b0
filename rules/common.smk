# Helpers shared by the rule files. Config validation, the grid of cells and shards, input functions.
import json
import math
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

# The package lives in workflow/ (src layout). Make it importable here and in every job's shell (on
# SLURM nodes too), whether or not it was pip-installed, and inside a conda env.
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, PACKAGE_DIR)


def python_function():
    """Shell code that makes `python` in every job's shell (the rules' `python -m grokking ...`) the
    interpreter Snakemake runs on, so that .venv/bin/snakemake works without activating the venv (a
    `python` found on PATH may lack torch). Nothing under --use-conda: there the conda env's own
    python, first on PATH, is the right one. A shell function rather than other shell commands in
    the rules, since Snakemake reruns the jobs of a rule whose command changes (trainings too)."""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return ""
    return f'python() {{ {shlex.quote(sys.executable)} "$@"; }}; '


# What every job's shell runs first; braces doubled since Snakemake formats the prefix.
JOB_SHELL_SETUP = f"export PYTHONPATH='{PACKAGE_DIR}'${{PYTHONPATH:+:$PYTHONPATH}}; {python_function()}"
shell.prefix(JOB_SHELL_SETUP.replace("{", "{{").replace("}", "}}"))

from grokking.config import ConfigError, validate_config  # noqa: E402
from grokking.figures import KINDS as FIGURE_KINDS, figure_kind  # noqa: E402
from grokking.grid import cell_layout, study_shards, training_settings  # noqa: E402
from grokking.ledger import figures_with_claims, paper_section  # noqa: E402
from grokking.tasks import task_of  # noqa: E402

try:
    _validated = validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

# Resources of the jobs that only read and write tables or draw (seconds each): one place for all.
SMALL_JOB = {"mem_mb": 1000, "runtime": 5}  # a Python interpreter with pandas
PLOT_JOB = {"mem_mb": 2000, "runtime": 5}  # matplotlib with a figure of up to 21x21 cells per panel

STUDIES = config["studies"]
ENGINE = config["engine"]
# Cells of every study with their shard: the one place where the grid is expanded.
SHARDS = {name: study_shards(study, ENGINE) for name, study in STUDIES.items()}

def figures_of_kind(kind):
    """Figures of one kind (validation has checked that every study they draw is configured)."""
    return [name for name, figure in config["figures"].items() if figure["kind"] == kind]


ALL_FIGURES = list(config["figures"])

# Wildcard patterns (used by the Snakefile's wildcard_constraints and each plotting rule's).
STUDY_PATTERN = "|".join(STUDIES) or "no-study"
SHARD_PATTERN = r"s\d{3}"
FIGURE_PATTERN = "|".join(ALL_FIGURES) or "no-figure"
LEDGER_FIGURES = [name for name in figures_with_claims() if name in config["figures"]]
LEDGER_FIGURE_PATTERN = "|".join(LEDGER_FIGURES) or "no-figure"
# Studies whose task prepares data of their own (results/<study>/dataset.pt).
OWN_DATA_PATTERN = "|".join(name for name, study in STUDIES.items() if task_of(study).prepare) or "no-study"


def figure_pattern(kind):
    """The figures of one kind (the wildcard constraint of that kind's plotting job)."""
    return "|".join(figures_of_kind(kind)) or "no-figure"


def get_all_figures():
    """PDF and PNG of every figure."""
    return expand("results/figures/{figure}.{ext}", figure=ALL_FIGURES, ext=("pdf", "png"))


def get_all_targets():
    """Every figure, the claims summary computed from the diagrams they draw, and the ledger."""
    summary = ["results/summary/claims.csv", "results/summary/claims.md"] if diagram_tables() else []
    ledger = ["results/summary/ledger.csv", "results/summary/ledger.md", "results/summary/what_reproduces.md"]
    return get_all_figures() + summary + ledger


def get_paper_section(wildcards):
    """The HTML report's section of a figure and of its claims: the paper it reproduces."""
    return paper_section(wildcards.figure)


def get_ledger_figures(wildcards):
    """The figures of this config that test some claim of the ledger."""
    return LEDGER_FIGURES


def get_ledger_rows(wildcards):
    return expand("results/ledger/{figure}.csv", figure=LEDGER_FIGURES)


def shard_cells(study, shard):
    cells = SHARDS[study]
    return cells[cells["shard"] == shard].drop(columns="shard")


def get_shard_metrics(wildcards):
    shards = sorted(SHARDS[wildcards.study]["shard"].unique())
    return expand("results/{study}/shards/{shard}.metrics.csv", study=wildcards.study, shard=shards)


def get_cell_layout(wildcards):
    """What decides a study's cells and shards, as JSON: aggregation checks every shard's metrics
    against it (a truncated file must not lose cells silently)."""
    return json.dumps(cell_layout(STUDIES[wildcards.study], ENGINE), sort_keys=True)


def get_data_spec(wildcards):
    """The settings that define a study's own data, as its task names them (others never rebuild it)."""
    study = STUDIES[wildcards.study]
    return json.dumps(task_of(study).data_settings(study), sort_keys=True)


def get_dataset(wildcards):
    """The data file a study trains on, as its task declares it (toy: its own splits; MNIST: the
    subset all MNIST studies share)."""
    return task_of(STUDIES[wildcards.study]).dataset(wildcards.study, STUDIES[wildcards.study])


def get_mnist_download_flag(wildcards):
    return "--download" if config["data"]["download"] else "--no-download"


def cell_steps_per_second(study):
    """Throughput for runtime estimates: the study's own (MNIST) or the engine's."""
    return study.get("cell_steps_per_second", ENGINE["cell_steps_per_second"])


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
    study = STUDIES[wildcards.study]
    seconds = cells * study["budget"] / (cell_steps_per_second(study) * ENGINE["threads"])
    return attempt * (10 + math.ceil(seconds / 60))


def extended_budget(study):
    """A study's extended budget; asking for extended-budget results of a study without one is an
    error that says so (not a failed lookup deep inside a rule)."""
    if "extended_budget" not in STUDIES[study]:
        raise WorkflowError(
            f"study {study} has no extended_budget, so its extended-budget results (continued shards, "
            f"cells_extended, phases_extended, phase_changes) cannot be made: set "
            f"studies.{study}.extended_budget, or ask for results/{study}/phases.csv"
        )
    return STUDIES[study]["extended_budget"]


def get_extended_budget(wildcards):
    return extended_budget(wildcards.study)


def get_continue_spec(wildcards):
    """Training settings of a continuation: the study's, with the extended budget as its budget."""
    study = STUDIES[wildcards.study]
    settings = training_settings(study) | {"budget": extended_budget(wildcards.study)}
    engine = {key: ENGINE[key] for key in ("device", "compile", "check_every")}
    return json.dumps({"study": settings, "engine": engine}, sort_keys=True)


def get_continue_runtime(wildcards, attempt):
    """Minutes for a continuation, bounded by a whole shard running the extra steps."""
    study = STUDIES[wildcards.study]
    cells = len(shard_cells(wildcards.study, wildcards.shard))
    steps = extended_budget(wildcards.study) - study["budget"]
    seconds = cells * steps / (cell_steps_per_second(study) * ENGINE["threads"])
    return attempt * (10 + math.ceil(seconds / 60))


def get_continued_metrics(wildcards):
    """Continuation results of the shards that hold cells to continue (known after the checkpoint)."""
    import pandas as pd

    extended_budget(wildcards.study)  # before the checkpoint: a study without one stops the DAG here
    reruns = pd.read_csv(checkpoints.select_reruns.get(study=wildcards.study).output[0])
    shards = sorted(reruns["shard"].unique())
    return expand("results/{study}/extended/{shard}.metrics.csv", study=wildcards.study, shard=shards)


def figure_spec(name):
    return config["figures"][name]


def get_study_histories(study):
    """The history files of every shard of a study (embeddings and accuracies)."""
    shards = sorted(SHARDS[study]["shard"].unique())
    return expand("results/{study}/shards/{shard}.history.pt", study=study, shard=shards)


def figure_inputs(name):
    """Named lists of the result files a figure reads, as its kind declares them."""
    spec = figure_spec(name)
    return figure_kind(spec["kind"]).inputs(spec, STUDIES, get_study_histories)


def get_figure_inputs(wildcards):
    return figure_inputs(wildcards.figure)


def get_figure_input_args(wildcards):
    """The same files as NAME=PATH words for the plot verb (a list, quoted one by one with :q)."""
    return [f"{name}={path}" for name, paths in figure_inputs(wildcards.figure).items() for path in paths]


def get_figure_options(wildcards):
    """The kind's drawing options of a figure, as JSON: a change reruns that figure only."""
    spec = figure_spec(wildcards.figure)
    return json.dumps(figure_kind(spec["kind"]).options(spec, STUDIES), sort_keys=True)


def diagram_tables():
    """Diagram name -> phases table: every study drawn as a phase diagram (and its extended-budget
    table where a smooth figure draws one), as the figure kinds declare them."""
    tables = {}
    for name in ALL_FIGURES:
        spec = figure_spec(name)
        tables.update(figure_kind(spec["kind"]).diagrams(spec, STUDIES))
    return dict(sorted(tables.items()))


def get_claims_inputs(wildcards):
    return list(diagram_tables().values())


def get_claims_diagrams(wildcards):
    """NAME=PATH words, one per diagram (a list, quoted one by one with :q in the shell)."""
    return [f"{name}={path}" for name, path in diagram_tables().items()]


def get_claims_mnist(wildcards):
    """Diagram names of MNIST studies (claim 3: grokking appears on MNIST)."""
    return [name for name in diagram_tables() if STUDIES[name.removesuffix("_extended")]["task"] == "mnist"]


def landscape_study(study):
    """A study whose landscapes are asked for; one trained without saved weights is an error that
    says so (not a missing key in a history file)."""
    if not STUDIES[study].get("save_weights"):
        raise WorkflowError(f"study {study} keeps no final weights, so its loss landscape cannot be drawn: "
                            f"set studies.{study}.save_weights: true")
    return STUDIES[study]


def get_landscape_histories(wildcards):
    landscape_study(wildcards.study)
    return get_study_histories(wildcards.study)


def get_landscape_study(wildcards):
    return json.dumps(training_settings(landscape_study(wildcards.study)), sort_keys=True)


def get_landscape_runtime(wildcards, attempt):
    """Minutes: about 2 per cell on one thread at 21 x 21 points and 1024 rows (measured: 60 s)."""
    study = landscape_study(wildcards.study)
    points = study["landscape"]["points"] ** 2 / 441 * study["landscape"]["rows"] / 1024
    return attempt * (5 + math.ceil(2 * len(SHARDS[wildcards.study]) * points))
