"""Snakemake entry point: build a domain's document table (cft.corpus)."""

from pathlib import Path

from cft import corpus
from cft.logging_utils import start_job

start_job(snakemake)
corpus.run(
    snakemake.config,
    snakemake.wildcards.domain,
    raw_dir=Path(snakemake.params.raw_dir),
    out_dir=Path(snakemake.output.table).parent,
)
