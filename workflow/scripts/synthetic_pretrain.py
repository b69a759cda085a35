"""Snakemake entry point: the synthetic experiment's pretraining of one seed (cft.synthetic)."""

from pathlib import Path

import torch

from cft.core.logging_utils import start_job
from cft.synthetic import stages

start_job(snakemake)
torch.set_num_threads(snakemake.threads)  # parallel jobs share the cores
stages.run_pretrain(
    snakemake.config,
    snakemake.wildcards.scale,
    int(snakemake.wildcards.seed),
    Path(snakemake.output[0]),
    Path(snakemake.params.work_dir),
)
