# make demo | make test | make reproduce  -- each creates .venv and installs the project when missing.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= 2
# Jobs run on the interpreter Snakemake runs on (rules/common.smk): no PATH setting needed.

.PHONY: demo test reproduce benchmark lint clean

# pip takes torch==2.14.1 and torchvision==0.29.1 (pinned in pyproject.toml) from local disk here.
$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[test,slurm]'
	touch $@

demo: $(VENV)/.installed  ## every figure of every paper on small grids and short budgets (31.5 min measured on 2 idle cores; about 29 after a trim, projected)
	$(SNAKEMAKE) --cores $(CORES) --configfile presets/demo.yaml

test: $(VENV)/.installed  ## the whole test suite (444 tests, 17.6 min on 2 idle cores)
	$(PYTHON) -m pytest -q

reproduce: $(VENV)/.installed  ## every figure of config.yaml at the report's settings
	$(SNAKEMAKE) --cores $(CORES)

benchmark: $(VENV)/.installed  ## engine vs one-model-per-process baseline
	$(PYTHON) benchmarks/engine.py

lint: $(VENV)/.installed
	$(SNAKEMAKE) --lint

clean:
	rm -rf results logs .snakemake
