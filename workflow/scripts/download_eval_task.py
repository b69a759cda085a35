"""Snakemake entry point: fetch one evaluation task's datasets into HF_HOME (cft.evaluation)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import evaluation
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
evaluation.download_task(snakemake.wildcards.task, Path(snakemake.output[0]))
