"""Snakemake entry point: tokenize and pack one (domain, model, method) (cft.packing.tokenize)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.packing import tokenize as packing

start_job(snakemake)
packing.run(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    snakemake.wildcards.method,
    corpus_table=Path(snakemake.input.corpus),
    tokenizer_dir=Path(snakemake.input.model),
    out_dir=Path(snakemake.output[0]),
    autogen_table=Path(snakemake.input.autogen) if hasattr(snakemake.input, "autogen") else None,
    threads=snakemake.threads,
)
