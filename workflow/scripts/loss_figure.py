"""Snakemake entry point: the training-loss curves of a (domain, model), one per trained method
(cft.tables.figures)."""

from pathlib import Path

from cft.core.fingerprints import LOSS_CURVE
from cft.core.logging_utils import start_job
from cft.tables import figures

start_job(snakemake)
# .../{method}/seed{seed}: one curve per method
curves = {Path(folder).parent.name: Path(folder) / LOSS_CURVE for folder in snakemake.input.models}
figures.loss_figure(
    curves,
    f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}: training loss",
    Path(snakemake.output.png),
    Path(snakemake.output.svg),
)
