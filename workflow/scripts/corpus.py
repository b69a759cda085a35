"""Snakemake entry point: build a domain's document table (cft.corpus)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import corpus
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
corpus.run(
    snakemake.config,
    snakemake.wildcards.domain,
    raw_dir=Path(snakemake.params.raw_dir),
    out_dir=Path(snakemake.output.table).parent,
)
