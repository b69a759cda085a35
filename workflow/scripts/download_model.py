"""Snakemake entry point: download one model from the hub (cft.data.download)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.data.download import download_model

start_job(snakemake)
model = snakemake.wildcards.model
download_model(model, snakemake.config["models"][model], Path(snakemake.output[0]))
