# Figures: every plot is a target (results/figures/<name>.pdf and .png).
#
# One plotting rule per figure kind of the registry (grokking.figures), all made by this one
# definition (in the HTML report, each figure sits in its paper's section beside its claims): the kind declares the files a figure reads and its drawing options, and the job runs
# `python -m grokking plot <kind>`. A rule per kind, rather than one rule, keeps each kind's caption
# in the HTML report (a report caption is fixed per rule) and its name in the logs.


for figure_kind_ in FIGURE_KINDS.values():

    rule:
        name:
            f"plot_{figure_kind_.name}"
        input:
            unpack(get_figure_inputs),
        output:
            pdf=report(
                "results/figures/{figure}.pdf",
                caption=f"../workflow/report/{figure_kind_.caption}",
                category=get_paper_section,
                subcategory="{figure}",
            ),
            png="results/figures/{figure}.png",
            **{suffix: f"results/figures/{{figure}}.{suffix}" for suffix in figure_kind_.tables},
        log:
            f"logs/plot_{figure_kind_.name}/{{figure}}.log",
        params:
            kind=figure_kind_.name,
            inputs=get_figure_input_args,
            options=get_figure_options,
        wildcard_constraints:
            figure=figure_pattern(figure_kind_.name),
        threads: 1
        resources:
            **PLOT_JOB,
        conda:
            "../envs/grokking.yaml"
        shell:
            "python -m grokking plot {params.kind} --input {params.inputs:q} --options={params.options:q}"
            " --pdf {output.pdf} --png {output.png} > {log} 2>&1"
