# Phase classification: the report's rule applied to every cell of a study.


# lr, wd, T_train, T_val, gap and phase of every cell.
rule classify_phases:
    input:
        "results/{study}/cells.csv",
    output:
        "results/{study}/phases.csv",
    log:
        "logs/classify_phases/{study}.log",
    params:
        gap=lookup(dpath="studies/{study}/grokking_gap", within=config),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking classify --cells {input} --gap {params.gap} --out {output} > {log} 2>&1"
