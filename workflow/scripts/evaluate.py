"""Snakemake entry point: one lm-eval task on one model (cft.evaluation)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import evaluation
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
out = Path(snakemake.output[0])
evaluation.run(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    snakemake.wildcards.method,
    snakemake.wildcards.task,
    model_dir=Path(snakemake.input.model),
    out_json=out,
    samples_jsonl=(
        out.with_suffix(".samples.jsonl") if snakemake.config["evaluation"]["log_samples"] else None
    ),
)
