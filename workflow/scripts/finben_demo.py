"""Snakemake entry point: the offline FinBen-format sets (cft.data.finben_demo)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.data import finben_demo

start_job(snakemake)
finben_demo.write_sets(
    {Path(out).name: Path(out) for out in snakemake.output}, seed=snakemake.config["seed"]
)
