# Figures: every plot is a target (results/figures/<name>.pdf and .png).
# Titles are optional (default ""): they are passed as --title={params.title:q}, since Snakemake's :q
# leaves an empty string unquoted and `--title {params.title:q}` would lose the argument.


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
        "python -m grokking plot-phases --phases {input} --titles {params.titles:q}"
        " --suptitle={params.suptitle:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# A study's discrete diagram at its budget beside the smooth one at its extended budget (Figs. 3-5).
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
        outline=get_smooth_outline,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-smooth --discrete {input.discrete} --smooth {input.smooth}"
        " --changes {input.changes} --gap {params.gap} --title={params.title:q} {params.outline}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# Accuracy curves of one study's cells beside the map of another's T_train (Fig. 6, MNIST).
rule plot_dynamics:
    input:
        unpack(get_dynamics_inputs),
    output:
        pdf=report(
            "results/figures/{dynamics_figure}.pdf",
            caption="../workflow/report/dynamics.rst",
            category="Training dynamics",
        ),
        png="results/figures/{dynamics_figure}.png",
    log:
        "logs/plot_dynamics/{dynamics_figure}.log",
    params:
        threshold=get_dynamics_threshold,
        title=lookup(dpath="figures/{dynamics_figure}/title", within=config),
    wildcard_constraints:
        dynamics_figure=DYNAMICS_FIGURE_PATTERN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-dynamics --histories {input.histories} --cells {input.cells}"
        " --map {input.map} --threshold {params.threshold} --title={params.title:q}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# One study's phase diagrams, one panel per seed pair or activation (Figs. 7-10, appendices A-B).
rule plot_facets:
    input:
        get_facet_phases,
    output:
        pdf=report(
            "results/figures/{facet_figure}.pdf",
            caption="../workflow/report/facets.rst",
            category="Seeds and activations",
        ),
        png="results/figures/{facet_figure}.png",
    log:
        "logs/plot_facets/{facet_figure}.log",
    params:
        options=get_facet_options,
        title=lookup(dpath="figures/{facet_figure}/title", within=config),
    wildcard_constraints:
        facet_figure=FACET_FIGURE_PATTERN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-facets --phases {input} {params.options} --title={params.title:q}"
        " --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# Token embeddings against steps, from the saved histories, one panel per cell (Figs. 11-12).
rule plot_trajectories:
    input:
        unpack(get_trajectory_inputs),
    output:
        pdf=report(
            "results/figures/{trajectory_figure}.pdf",
            caption="../workflow/report/trajectories.rst",
            category="Embedding trajectories",
        ),
        png="results/figures/{trajectory_figure}.png",
    log:
        "logs/plot_trajectories/{trajectory_figure}.log",
    params:
        options=get_trajectory_options,
        title=lookup(dpath="figures/{trajectory_figure}/title", within=config),
    wildcard_constraints:
        trajectory_figure=TRAJECTORY_FIGURE_PATTERN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-trajectories --histories {input.histories} --phases {input.phases}"
        " {params.options} --title={params.title:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# Each cell's majority phase over the seed pairs and how many agree (Fig. 13, beyond the report).
rule plot_robustness:
    input:
        get_robustness_phases,
    output:
        pdf=report(
            "results/figures/{robustness_figure}.pdf",
            caption="../workflow/report/robustness.rst",
            category="Beyond the report",
        ),
        png="results/figures/{robustness_figure}.png",
    log:
        "logs/plot_robustness/{robustness_figure}.log",
    params:
        titles=get_robustness_titles,
        title=lookup(dpath="figures/{robustness_figure}/title", within=config),
    wildcard_constraints:
        robustness_figure=ROBUSTNESS_FIGURE_PATTERN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking plot-robustness --phases {input} --titles {params.titles:q}"
        " --title={params.title:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
