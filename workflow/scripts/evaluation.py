"""Snakemake entry point: one lm-eval task on one model (cft.evaluation)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft import evaluation
from cft.logging_utils import setup_logging
from cft.paths import parse_run

setup_logging(snakemake.log[0])
method, seed = parse_run(snakemake.wildcards.run)
evaluation.run(
    snakemake.config,
    snakemake.wildcards.domain,
    snakemake.wildcards.model,
    method,
    snakemake.wildcards.task,
    model_dir=Path(snakemake.input.model),
    out_json=Path(snakemake.output.json),
    samples_jsonl=Path(snakemake.output.samples),
    seed=seed,
)
