"""The real Snakemake DAG: lint, dry runs, config errors and the smoke preset end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, load_config
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
    # toy: 2 diagrams x 21 shards of 21 cells = 42; MNIST: 10x10 in rows of 10 = 10, 15x14 in rows of
    # 14 = 15, Fig. 6's single run = 1; seeds: 2 x 9 x 441 cells in shards of 21 = 378; activations:
    # 2 x 3 x 441 / 21 = 126; trajectories: 1; modular arithmetic: 27 studies of one shard each
    # (three seeds, or a sweep); 003's sweeps: 36 (p, batch) members of 10 runs, 6 batch sizes x 50
    # runs in shards of 17 = 18, 2 landscape and 3 training-fraction members, 2 weight-decay
    # studies = 61; 003 section 4 / Omnigrok MNIST: Table 3's shared shard, 4 training-set sizes,
    # 3 batch sizes, the init-scale sweep in 2 shards and the 28 x 21 LU maps in 28 shards = 38;
    # 002's parity: 1 + 1 + 2 = 4. 42 + 10 + 15 + 1 + 378 + 126 + 1 + 27 + 61 + 38 + 4 = 703
    assert proc.stdout.count("rule train_shard:") == 703


def test_bad_config_stops_with_one_clear_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  toy_cls:\n    budget: -5\n")
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "config error at studies.toy_cls.budget: -5 is less than the minimum of 1" in (
        proc.stdout + proc.stderr
    )


# The smoke preset reads MNIST from ../shared/data relative to the checkout; the copy lives elsewhere.
MNIST_ROOT = (ROOT / ".." / "shared" / "data").resolve()
LOCAL = "local.yaml"


def with_local_data(workdir: Path) -> Path:
    (workdir / LOCAL).write_text(f"data:\n  mnist_root: '{MNIST_ROOT}'\n")
    return workdir


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The whole smoke DAG, built once for the tests that inspect it."""
    workdir = with_local_data(copy_workflow(tmp_path_factory.mktemp("smoke")))
    snakemake(workdir, "--cores", "2", "--configfile", "presets/smoke.yaml", LOCAL, check=True, timeout=1800)
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
    assert "Nothing to be done" in snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml", LOCAL,
                                             check=True).stdout


def dry_run_jobs(workdir: Path, *configfiles: str) -> list[str]:
    """The rule names of the jobs a dry run would execute, one entry per job (the target rule
    `all` aside, which runs whenever anything does)."""
    stdout = snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml", LOCAL, *configfiles,
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
    assert dry_run_jobs(workdir, "retitle.yaml") == ["plot_smooth"]

    # A longer extended budget re-runs the continuations and what follows them, never a base training.
    (workdir / "longer.yaml").write_text("studies:\n  toy_cls:\n    extended_budget: 900\n")
    jobs = dry_run_jobs(workdir, "longer.yaml")
    assert "continue_shard" in jobs and "plot_smooth" in jobs
    assert not {"train_shard", "prepare_study_data", "aggregate_study", "plot_phases"} & set(jobs)
    assert jobs.count("plot_smooth") == 1  # fig3 only: toy_regr is untouched


@pytest.mark.slow
def test_smoke_builds_the_mnist_figures(smoke_run):
    workdir = smoke_run
    for figure in ("fig2_mnist_phases", "fig5_mnist_smooth", "fig6_mnist_dynamics"):
        for ext in ("pdf", "png"):
            assert (workdir / f"results/figures/{figure}.{ext}").stat().st_size > 10_000
    phases = pd.read_csv(workdir / "results/mnist/phases.csv")
    assert len(phases) == 4 and (phases["budget"] == 200).all()
    extended = pd.read_csv(workdir / "results/mnist_extended/cells_extended.csv")
    assert len(extended) == 4 and (extended["budget"] == 400).all() and extended["steps_run"].max() == 400
    assert len(pd.read_csv(workdir / "results/mnist_extended/reruns.csv")) > 0
    # One MNIST subset file serves every MNIST study.
    assert [p.name for p in (workdir / "results/data").iterdir()] == ["mnist_seed0_n1000.pt"]


APPENDIX_FIGURES = ("fig7_toy_cls_seeds", "fig8_toy_regr_seeds", "fig9_toy_cls_activations",
                    "fig10_toy_regr_activations", "fig11_embedding_trajectories",
                    "fig12_embedding_trajectories_long", "fig13_toy_phase_robustness")


@pytest.mark.slow
def test_smoke_builds_the_appendix_figures_and_claims(smoke_run):
    workdir = smoke_run
    for figure in APPENDIX_FIGURES:
        for ext in ("pdf", "png"):
            assert (workdir / f"results/figures/{figure}.{ext}").stat().st_size > 10_000, figure
    seeds = pd.read_csv(workdir / "results/toy_cls_seeds/phases.csv")
    assert len(seeds) == 9 * 4 and seeds.groupby(["data_seed", "model_seed"]).size().eq(4).all()
    activations = pd.read_csv(workdir / "results/toy_regr_activations/phases.csv")
    assert sorted(activations["activation"].unique()) == ["leaky_relu", "relu", "tanh"]
    # The trajectory figures are drawn from the saved embedding history: redrawing one retrains nothing.
    redraw = snakemake(workdir, "-n", "--configfile", "presets/smoke.yaml", LOCAL, "--forcerun",
                       "plot_trajectories", "--", "results/figures/fig11_embedding_trajectories.pdf",
                       check=True).stdout
    assert [r for r in re.findall(r"^rule (\w+):$", redraw, flags=re.MULTILINE)] == ["plot_trajectories"]
    claims = pd.read_csv(workdir / "results/summary/claims.csv")
    # one row per diagram: 5 single diagrams + 2 extended ones, 9 + 9 seed pairs, 3 + 3 activations
    assert len(claims) == 5 + 2 + 18 + 6
    assert claims.set_index("diagram").loc["mnist", "claim3_grokking_appears"] in (True, False)
    phases = pd.read_csv(workdir / "results/toy_cls/phases.csv")
    row = claims.set_index("diagram").loc["toy_cls"]
    assert row["cells"] == len(phases) and row["n_confusion"] == (phases["phase"] == "confusion").sum()
    assert "| toy_cls |" in (workdir / "results/summary/claims.md").read_text()


@pytest.mark.slow
def test_smoke_builds_the_ledger_of_every_claim(smoke_run):
    from grokking.ledger import CLAIMS, PAPERS
    from grokking.ledger.verdicts import VERDICTS

    workdir = smoke_run
    ledger = pd.read_csv(workdir / "results/summary/ledger.csv", keep_default_na=False)
    assert list(ledger["key"]) == [c.key for c in CLAIMS]
    assert set(ledger["verdict"]) <= set(VERDICTS) and set(ledger["preset"]) == {"smoke"}
    assert (ledger["size"] != "").all()  # every claim measured, each saying at which size
    markdown = (workdir / "results/summary/ledger.md").read_text()
    assert all(f"## {paper}: {title}" in markdown for paper, title in PAPERS.items())
    # A figure's rows are their own job: redrawing nothing else, changing one study reruns its figures' rows.
    rows = pd.read_csv(workdir / "results/ledger/fig1_toy_phases.csv")
    assert set(rows["figure"]) == {"fig1_toy_phases"}


@pytest.mark.slow
def test_report_holds_every_figure(smoke_run):
    workdir = smoke_run
    snakemake(workdir, "--report", "results/report.html", "--configfile", "presets/smoke.yaml", LOCAL,
              check=True)
    html = (workdir / "results/report.html").read_text()
    figures = sorted(p.stem for p in (workdir / "results/figures").glob("*.pdf"))
    assert figures == sorted(load_config("smoke")["figures"])  # every figure of every paper
    for figure in figures:
        assert f"{figure}.pdf" in html, figure
    assert "ledger.csv" in html and "fig1_toy_phases.csv" in html  # the ledger, and each figure's claims
