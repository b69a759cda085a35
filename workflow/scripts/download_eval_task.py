"""Snakemake entry point: fetch one evaluation task's datasets into HF_HOME (cft.evaluation)."""

from pathlib import Path

from cft import evaluation
from cft.logging_utils import start_job

start_job(snakemake)
evaluation.download_task(snakemake.wildcards.task, Path(snakemake.output[0]))
