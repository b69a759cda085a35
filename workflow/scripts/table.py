"""Snakemake entry point: one (domain, model) table and its bar chart (cft.tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import paths, tables
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
tables.write_table(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    eval_root=Path(paths.EVAL_ROOT),
    out_dir=Path(snakemake.output.md).parent,
)
