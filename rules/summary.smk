# Summary: the [Re] report's claims per phase diagram, and the ledger of every paper's claims.


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


# The claims one figure tests (grokking.ledger), measured on the files its plot reads: a study's new
# setting recomputes the rows of the figures that draw it and nothing else.
rule ledger_rows:
    input:
        unpack(get_figure_inputs),
    output:
        report(
            "results/ledger/{figure}.csv",
            caption="../workflow/report/ledger_rows.rst",
            category=get_paper_section,
            subcategory="{figure}",
        ),
    log:
        "logs/ledger_rows/{figure}.log",
    params:
        inputs=get_figure_input_args,
        options=get_figure_options,
        preset=config["preset"],
    wildcard_constraints:
        figure=LEDGER_FIGURE_PATTERN,
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking ledger-rows --figure {wildcards.figure} --input {params.inputs:q}"
        " --options={params.options:q} --preset {params.preset} --out {output} > {log} 2>&1"


# Every claim of the five papers in one table: measured where this config builds the figure that
# tests it, "not run" where it does not.
rule ledger:
    input:
        rows=get_ledger_rows,
    output:
        csv=report("results/summary/ledger.csv", caption="../workflow/report/ledger.rst", category="Summary"),
        markdown="results/summary/ledger.md",
        summary="results/summary/what_reproduces.md",
    log:
        "logs/ledger/ledger.log",
    params:
        built=get_ledger_figures,
        preset=config["preset"],
    threads: 1
    resources:
        **SMALL_JOB,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking ledger --rows {input.rows:q} --built {params.built:q} --preset {params.preset}"
        " --csv {output.csv} --markdown {output.markdown} --summary {output.summary} > {log} 2>&1"
