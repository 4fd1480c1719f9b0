# Data preparation: each study's train/validation splits and regression targets, written once.


# The toy addition splits of every data seed a study uses (report section 3).
rule prepare_toy_data:
    output:
        "results/{study}/dataset.pt",
    log:
        "logs/prepare_toy_data/{study}.log",
    params:
        spec=get_data_spec,
    threads: 1
    resources:
        mem_mb=1000,  # a few kilobytes of indices; the interpreter dominates
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking prepare-toy --study {params.spec:q} --out {output} > {log} 2>&1"
