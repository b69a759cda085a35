"""Snakemake entry point of a (domain, model) table with its bar chart (cft.tables.table), built
from exactly the eval records of the folders the rule declares as its input."""

from pathlib import Path

from cft.core.grid import table_records
from cft.core.logging_utils import start_job
from cft.tables import table as tables

start_job(snakemake)
domain, model = snakemake.wildcards.domain, snakemake.wildcards.model
tables.write_table(
    snakemake.config,
    domain,
    model,
    records=[Path(path) for path in table_records(snakemake.config, domain, model)],
    out_dir=Path(snakemake.output.md).parent,
)
