"""Snakemake entry point: export the CFT set as Gemini tuning JSONL (cft.packing.export)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.packing import export

start_job(snakemake)
export.run(
    snakemake.config,
    snakemake.wildcards.domain,
    corpus_table=Path(snakemake.input[0]),
    out=Path(snakemake.output.jsonl),
)
