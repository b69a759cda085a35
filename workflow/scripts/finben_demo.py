"""Snakemake entry point: the offline FinBen-format sets (cft.finben_demo)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import finben_demo
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
finben_demo.write_sets(
    {Path(out).name: Path(out) for out in snakemake.output}, seed=snakemake.config["seed"]
)
