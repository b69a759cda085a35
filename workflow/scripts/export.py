"""Snakemake entry point: export the CFT set as Gemini tuning JSONL (cft.export)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import export
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
export.run(
    snakemake.config,
    snakemake.wildcards.domain,
    corpus_table=Path(snakemake.input[0]),
    out=Path(snakemake.output.jsonl),
)
