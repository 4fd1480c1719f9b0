# Aggregation: the shards' metric tables of a study become one table (pd.concat, no log parsing).


# One row per cell: T_train, T_val, steps run, final accuracies, divergence.
rule aggregate_study:
    input:
        get_shard_metrics,
    output:
        "results/{study}/cells.csv",
    log:
        "logs/aggregate_study/{study}.log",
    params:
        layout=get_cell_layout,
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking aggregate --metrics {input} --layout {params.layout:q} --out {output}"
        " > {log} 2>&1"
