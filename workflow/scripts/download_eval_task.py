"""Snakemake entry point: fetch one evaluation task's datasets into HF_HOME
(cft.evaluation.evaluate)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.evaluation import evaluate as evaluation
from cft.evaluation.task_folders import task_dirs

start_job(snakemake)
evaluation.download_task(
    snakemake.wildcards.task, Path(snakemake.output[0]), task_dirs(snakemake.config)
)
