# Training: one job per shard; the shard's cells train together as one vectorized ensemble.


# Metrics, snapshots and the resumable end state of one shard.
rule train_shard:
    input:
        data=get_dataset,
    output:
        metrics="results/{study}/shards/{shard}.metrics.csv",
        history="results/{study}/shards/{shard}.history.pt",
        state="results/{study}/shards/{shard}.state.pt",
    log:
        "logs/train_shard/{study}/{shard}.log",
    benchmark:
        "logs/train_shard/{study}/{shard}.benchmark.tsv"
    params:
        spec=get_train_spec,
    threads: ENGINE["threads"]
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking train --spec {params.spec:q} --data {input.data}"
        " --shard {wildcards.shard} --threads {threads}"
        " --metrics {output.metrics} --history {output.history} --state {output.state}"
        " > {log} 2>&1"
