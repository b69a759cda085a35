"""Snakemake entry point: export the CFT set as Gemini tuning JSONL (cft.export)."""

from pathlib import Path

from cft import export
from cft.logging_utils import start_job

start_job(snakemake)
export.run(
    snakemake.config,
    snakemake.wildcards.domain,
    corpus_table=Path(snakemake.input[0]),
    out=Path(snakemake.output.jsonl),
)
