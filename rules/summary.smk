# Summary: the report's claims, computed from every phase diagram the figures draw.


# One row per diagram: phase counts, grokking's neighbours (claims 1-3), and a Markdown rendering.
rule summarize_claims:
    input:
        get_claims_inputs,
    output:
        csv=report("results/summary/claims.csv", caption="../workflow/report/claims.rst", category="Summary"),
        markdown="results/summary/claims.md",
    log:
        "logs/summarize_claims/claims.log",
    params:
        diagrams=get_claims_diagrams,
        mnist=get_claims_mnist,
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking claims --diagram {params.diagrams:q} --mnist {params.mnist:q}"
        " --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"
