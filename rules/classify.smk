# Phase classification: the report's rule applied to every cell of a study.


# lr, wd, T_train, T_val, gap and phase of every cell, at the budget or the extended budget.
rule classify_phases:
    input:
        "results/{study}/cells{extended}.csv",
    output:
        "results/{study}/phases{extended}.csv",
    log:
        "logs/classify_phases/{study}{extended}.log",
    params:
        gap=lookup(dpath="studies/{study}/grokking_gap", within=config),
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking classify --cells {input} --gap {params.gap} --out {output} > {log} 2>&1"
