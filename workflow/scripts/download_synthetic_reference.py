"""Snakemake entry point: the authors' synthetic curves, downloaded (cft.synthetic.reference)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.synthetic import reference

start_job(snakemake)
reference.download_reference(snakemake.params.url, Path(snakemake.output[0]))
