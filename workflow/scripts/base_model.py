"""Snakemake entry point: materialise a base model folder (cft.base_model)."""

from pathlib import Path

from cft import base_model
from cft.logging_utils import start_job

start_job(snakemake)
base_model.run(snakemake.config, snakemake.wildcards.model, Path(snakemake.output[0]))
