"""Snakemake entry point: one synthetic fine-tuning run, (task, condition, seed)
(cft.synthetic)."""

from pathlib import Path

import torch

from cft.core.logging_utils import start_job
from cft.synthetic import stages

start_job(snakemake)
torch.set_num_threads(snakemake.threads)  # parallel jobs share the cores
wildcards = snakemake.wildcards
stages.run_finetune(
    snakemake.config,
    wildcards.scale,
    wildcards.task,
    wildcards.condition,
    int(wildcards.seed),
    pretrained=Path(snakemake.input.pretrained),
    out_dir=Path(snakemake.output[0]),
    work_dir=Path(snakemake.params.work_dir),
)
