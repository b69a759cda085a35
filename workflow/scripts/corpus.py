"""Snakemake entry point: build a domain's document table (cft.data.corpus)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.data import corpus

start_job(snakemake)
corpus.run(
    snakemake.config,
    snakemake.wildcards.domain,
    raw_dir=Path(snakemake.params.raw_dir),
    out_dir=Path(snakemake.output.table).parent,
)
