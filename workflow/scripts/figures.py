"""Snakemake entry point of the figures beside a table (cft.tables.figures): the training-loss
curves of a (domain, model) or its knowledge-acquisition curves."""

from pathlib import Path

from cft.core.fingerprints import LOSS_CURVE
from cft.core.logging_utils import start_job
from cft.tables import figures

start_job(snakemake)
title = f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}"
if snakemake.rule == "loss_figure":
    # .../{method}/seed{seed}: one curve per method
    curves = {
        Path(folder).parent.name: Path(folder) / LOSS_CURVE for folder in snakemake.input.models
    }
    figures.loss_figure(
        curves, f"{title}: training loss", Path(snakemake.output.png), Path(snakemake.output.svg)
    )
else:  # knowledge_curve_figure
    figures.knowledge_figure(
        [Path(path) for path in snakemake.input],
        f"{title}: knowledge acquisition",
        Path(snakemake.output.png),
        Path(snakemake.output.svg),
    )
