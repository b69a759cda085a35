"""Snakemake entry point: materialise a base model folder (cft.data.base_model)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.data import base_model

start_job(snakemake)
base_model.run(snakemake.config, snakemake.wildcards.model, Path(snakemake.output[0]))
