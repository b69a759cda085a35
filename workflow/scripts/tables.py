"""Snakemake entry point of the tables stage's rules (cft.tables): one (domain, model) table
with its bar chart, its training-loss figure, or its knowledge-acquisition figure."""

from pathlib import Path

from cft import tables
from cft.fingerprints import LOSS_CURVE
from cft.logging_utils import start_job

start_job(snakemake)
title = f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}"
if snakemake.rule == "paper_table":
    tables.write_table(
        snakemake.config,
        snakemake.wildcards.domain,
        snakemake.wildcards.model,
        eval_root=Path(snakemake.params.eval_root),
        out_dir=Path(snakemake.output.md).parent,
    )
elif snakemake.rule == "loss_figure":
    # .../{method}/seed{seed}: one curve per method
    curves = {
        Path(folder).parent.name: Path(folder) / LOSS_CURVE for folder in snakemake.input.models
    }
    tables.loss_figure(
        curves, f"{title}: training loss", Path(snakemake.output.png), Path(snakemake.output.svg)
    )
else:  # knowledge_curve_figure
    tables.knowledge_figure(
        [Path(path) for path in snakemake.input],
        f"{title}: knowledge acquisition",
        Path(snakemake.output.png),
        Path(snakemake.output.svg),
    )
