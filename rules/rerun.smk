# Extended-budget reruns (report section 4.2): non-converged cells continue from their saved end
# state up to the study's extended_budget; converged cells keep their results.


# The cells to continue; a checkpoint, since which shards need a continuation depends on results.
checkpoint select_reruns:
    input:
        cells="results/{study}/cells.csv",
        phases="results/{study}/phases.csv",
    output:
        "results/{study}/reruns.csv",
    log:
        "logs/select_reruns/{study}.log",
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking select-reruns --cells {input.cells} --phases {input.phases}"
        " --out {output} > {log} 2>&1"


# A shard's selected cells, continued from its end state to the extended budget.
rule continue_shard:
    input:
        data=get_dataset,
        resume="results/{study}/shards/{shard}.state.pt",
        reruns="results/{study}/reruns.csv",
    output:
        metrics="results/{study}/extended/{shard}.metrics.csv",
        history="results/{study}/extended/{shard}.history.pt",
        state="results/{study}/extended/{shard}.state.pt",
    log:
        "logs/continue_shard/{study}/{shard}.log",
    benchmark:
        "logs/continue_shard/{study}/{shard}.benchmark.tsv"
    params:
        spec=get_continue_spec,
    threads: ENGINE["threads"]
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_continue_runtime,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking continue --spec {params.spec:q} --data {input.data}"
        " --resume {input.resume} --reruns {input.reruns} --shard {wildcards.shard}"
        " --threads {threads} --metrics {output.metrics} --history {output.history}"
        " --state {output.state} > {log} 2>&1"


# Every cell at the extended budget: continued cells' new results, converged cells' old ones.
rule merge_extended:
    input:
        cells="results/{study}/cells.csv",
        reruns="results/{study}/reruns.csv",
        continued=get_continued_metrics,
    output:
        "results/{study}/cells_extended.csv",
    log:
        "logs/merge_extended/{study}.log",
    params:
        budget=get_extended_budget,
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking merge-extended --cells {input.cells} --reruns {input.reruns}"
        " --continued {input.continued} --budget {params.budget} --out {output} > {log} 2>&1"


# The cells whose phase differs between the base and the extended budget.
rule list_phase_changes:
    input:
        base="results/{study}/phases.csv",
        extended="results/{study}/phases_extended.csv",
    output:
        "results/{study}/phase_changes.csv",
    log:
        "logs/list_phase_changes/{study}.log",
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking phase-changes --base {input.base} --extended {input.extended}"
        " --out {output} > {log} 2>&1"
