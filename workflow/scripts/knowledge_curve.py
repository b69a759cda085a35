"""Snakemake entry point: one knowledge-acquisition curve (cft.evaluation.knowledge_curve)."""

from pathlib import Path

from cft.core.logging_utils import start_job
from cft.evaluation import knowledge_curve

start_job(snakemake)
knowledge_curve.run(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    snakemake.wildcards.method,
    int(snakemake.wildcards.seed),
    tokenized_dir=Path(snakemake.input.tokenized),
    base_model_dir=Path(snakemake.input.base_model),
    out_json=Path(snakemake.output[0]),
)
