"""Snakemake entry point: fetch a model into the HF cache and write its manifest (cft.download)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft.download import download_model
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
model = snakemake.wildcards.model
download_model(model, snakemake.config["models"][model], Path(snakemake.output[0]))
