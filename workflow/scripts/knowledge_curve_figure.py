"""Snakemake entry point: the knowledge-acquisition curves of a (domain, model) in one figure
(cft.tables.figures)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.tables import figures

start_job(snakemake)
figures.knowledge_figure(
    [Path(path) for path in snakemake.input],
    f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}: knowledge acquisition",
    Path(snakemake.output.png),
    Path(snakemake.output.svg),
)
