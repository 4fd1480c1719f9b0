# Figures: every plot is a target (results/figures/<name>.pdf and .png).


# Discrete phase diagrams, one panel per study (Fig. 1: classification left, regression right).
rule plot_phase_diagram:
    input:
        get_figure_phases,
    output:
        pdf=report(
            "results/figures/{figure}.pdf",
            caption="../workflow/report/phase_diagram.rst",
            category="Phase diagrams",
        ),
        png="results/figures/{figure}.png",
    log:
        "logs/plot_phase_diagram/{figure}.log",
    params:
        titles=get_figure_titles,
        suptitle=lookup(dpath="figures/{figure}/title", within=config),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-phases --phases {input} --titles {params.titles}"
        " --suptitle {params.suptitle:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# A study's discrete diagram at its budget beside the smooth one at its extended budget (Figs. 3-4).
rule plot_smooth_diagram:
    input:
        unpack(get_smooth_inputs),
    output:
        pdf=report(
            "results/figures/{smooth_figure}.pdf",
            caption="../workflow/report/smooth_diagram.rst",
            category="Smooth phase diagrams",
        ),
        png="results/figures/{smooth_figure}.png",
    log:
        "logs/plot_smooth_diagram/{smooth_figure}.log",
    params:
        gap=get_smooth_gap,
        title=lookup(dpath="figures/{smooth_figure}/title", within=config),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-smooth --discrete {input.discrete} --smooth {input.smooth}"
        " --changes {input.changes} --gap {params.gap} --title {params.title:q}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"
