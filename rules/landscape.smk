# Loss landscapes (003 section 3.3): the loss around each saved cell's final weights, on a plane of
# two random directions, for studies trained with `save_weights: true`; directions filter-normalized
# (Li et al. 2018) or one unit Gaussian per tensor (003's code), as a figure asks.


rule loss_landscape:
    input:
        histories=get_landscape_histories,
        dataset="results/{study}/dataset.pt",
        cells="results/{study}/cells.csv",
    output:
        "results/{study}/landscape_{normalization}.pt",
    log:
        "logs/loss_landscape/{study}_{normalization}.log",
    params:
        study=get_landscape_study,
        span=lambda wildcards: STUDIES[wildcards.study]["landscape"]["span"],
        points=lambda wildcards: STUDIES[wildcards.study]["landscape"]["points"],
        rows=lambda wildcards: STUDIES[wildcards.study]["landscape"]["rows"],
        seed=lambda wildcards: STUDIES[wildcards.study]["landscape"]["seed"],
    wildcard_constraints:
        normalization="filter|tensor",
    threads: ENGINE["threads"]
    resources:
        mem_mb=4000,
        runtime=get_landscape_runtime,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking landscape --study {params.study:q} --histories {input.histories}"
        " --dataset {input.dataset} --cells {input.cells} --out {output} --span {params.span}"
        " --points {params.points} --rows {params.rows} --seed {params.seed}"
        " --normalization {wildcards.normalization} --threads {threads} > {log} 2>&1"
