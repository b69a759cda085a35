"""Snakemake entry point: training-loss curves of one (domain, model) (cft.tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import tables
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
# .../{method}/seed{seed}: one curve per method
curves = {
    Path(folder).parent.name: Path(folder) / "loss_curve.csv" for folder in snakemake.input.models
}
tables.loss_figure(
    curves,
    f"{snakemake.wildcards.domain} / {snakemake.wildcards.model}: training loss",
    Path(snakemake.output.png),
    Path(snakemake.output.svg),
)
