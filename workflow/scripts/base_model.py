"""Snakemake entry point: materialise a base model folder (cft.base_model)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import base_model
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
base_model.run(snakemake.config, snakemake.wildcards.model, Path(snakemake.output[0]))
