"""Snakemake entry point of a (domain, model) table with its bar chart (cft.tables.table), built
from exactly the eval records the rule declares as its input."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.tables import table as tables

start_job(snakemake)
tables.write_table(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    records=[Path(path) for path in snakemake.input.evals],
    out_dir=Path(snakemake.output.md).parent,
)
