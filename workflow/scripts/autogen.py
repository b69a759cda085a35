"""Snakemake entry point: generate TextAdaptCFT prompts for a domain (cft.autogen)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import autogen
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
autogen.run(
    snakemake.config,
    snakemake.wildcards.domain,
    corpus_table=Path(snakemake.input.corpus),
    model_dir=Path(snakemake.input.generator),
    out=Path(snakemake.output.table),
)
