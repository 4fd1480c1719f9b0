# Grokking phase diagrams, end to end: "[Re] Towards Understanding Grokking" (ReScience C, 2023).
#   snakemake --cores 16                          every figure of config.yaml
#   snakemake --cores 2 --configfile presets/demo.yaml   a small demo (minutes)
#   snakemake --profile profiles/slurm            on a SLURM cluster
#   snakemake results/figures/fig1_toy_phases.pdf --cores 16   one figure and only what it needs
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    study=STUDY_PATTERN,
    shard=SHARD_PATTERN,
    figure=FIGURE_PATTERN,
    extended="|_extended",


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/aggregate.smk"
include: "rules/classify.smk"
include: "rules/rerun.smk"
include: "rules/landscape.smk"
include: "rules/figures.smk"


include: "rules/summary.smk"


# Every figure and the claims summary.
rule all:
    input:
        get_all_targets(),
    default_target: True
