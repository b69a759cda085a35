"""Snakemake entry point: the synthetic experiment's summary over seeds, with the authors'
curves where the config has them (cft.synthetic)."""

from pathlib import Path

import torch

from cft.core.logging_utils import start_job
from cft.synthetic import summary

start_job(snakemake)
torch.set_num_threads(snakemake.threads)
config = snakemake.config
figures = zip(snakemake.output.figures, snakemake.output.vector_figures, strict=True)
summary.summarize(
    config,
    snakemake.wildcards.scale,
    [Path(p) for p in snakemake.input.runs],
    Path(snakemake.input.reference[0]) if snakemake.input.reference else None,
    Path(snakemake.output.json),
    Path(snakemake.output.md),
    {
        task: (Path(png), Path(svg))
        for task, (png, svg) in zip(config["synthetic"]["tasks"], figures, strict=True)
    },
)
