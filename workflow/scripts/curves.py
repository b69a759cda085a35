"""Snakemake entry point: one knowledge-acquisition curve (cft.curves)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import curves
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
curves.run(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    snakemake.wildcards.method,
    int(snakemake.wildcards.seed),
    tokenized_dir=Path(snakemake.input.tokenized),
    base_model_dir=Path(snakemake.input.base_model),
    out_json=Path(snakemake.output[0]),
)
