# Data preparation: each study's own data (as its task prepares it), and the shared MNIST subsets.


# A study's own data file (toy: the addition splits of every data seed it uses, report section 3),
# written by its task's prepare from the settings the task names; other settings never rebuild it.
rule prepare_study_data:
    output:
        "results/{study}/dataset.pt",
    log:
        "logs/prepare_study_data/{study}.log",
    params:
        spec=get_data_spec,
    wildcard_constraints:
        study=OWN_DATA_PATTERN,
    threads: 1
    resources:
        **SMALL_JOB,  # a few kilobytes of indices; the interpreter dominates
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking prepare --study {params.spec:q} --out {output} > {log} 2>&1"


# The report's 1000-image MNIST subset of one data seed, with the 10,000 validation images (section 3).
# Read through torchvision.datasets.MNIST from data.mnist_root (downloaded there when allowed).
rule prepare_mnist_data:
    output:
        "results/data/mnist_seed{data_seed}_n{subset_size}.pt",
    log:
        "logs/prepare_mnist_data/seed{data_seed}_n{subset_size}.log",
    params:
        root=lookup(dpath="data/mnist_root", within=config),
        download=get_mnist_download_flag,
    wildcard_constraints:
        data_seed=r"\d+",
        subset_size=r"\d+",
    threads: 1
    resources:
        mem_mb=2000,  # the 70,000 images as uint8 (55 MB) plus torchvision's copies
        runtime=10,  # seconds from local files; a first download takes a minute or two
    conda:
        "../envs/grokking.yaml"
    shell:
        "python -m grokking prepare-mnist --root {params.root:q} {params.download}"
        " --seed {wildcards.data_seed} --size {wildcards.subset_size} --out {output} > {log} 2>&1"
