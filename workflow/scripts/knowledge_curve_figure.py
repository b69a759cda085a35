"""Snakemake entry point: the knowledge-acquisition figure of one (domain, model) (cft.tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import tables
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
tables.knowledge_figure(
    [Path(path) for path in snakemake.input],
    f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}: knowledge acquisition",
    Path(snakemake.output.png),
    Path(snakemake.output.svg),
)
