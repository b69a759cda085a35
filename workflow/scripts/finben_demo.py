"""Snakemake entry point: the offline FinBen-format sets (cft.finben_demo)."""

from pathlib import Path

from cft import finben_demo
from cft.logging_utils import start_job

start_job(snakemake)
finben_demo.write_sets(
    {Path(out).name: Path(out) for out in snakemake.output}, seed=snakemake.config["seed"]
)
