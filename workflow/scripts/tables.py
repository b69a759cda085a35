"""Snakemake entry point of a (domain, model) table with its bar chart (cft.tables), built from
exactly the eval records the rule declares as its input."""

from pathlib import Path

from cft import tables
from cft.logging_utils import start_job

start_job(snakemake)
tables.write_table(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    records=[Path(path) for path in snakemake.input.evals],
    out_dir=Path(snakemake.output.md).parent,
)
