"""Snakemake entry point of the synthetic experiment's rules (the cft.synthetic package)."""

from pathlib import Path

import torch

from cft.core.logging_utils import start_job
from cft.synthetic import reference, stages, summary

start_job(snakemake)
torch.set_num_threads(snakemake.threads)  # parallel jobs share the cores
config, wildcards = snakemake.config, snakemake.wildcards
if snakemake.rule == "synthetic_pretrain":
    stages.run_pretrain(
        config,
        wildcards.scale,
        int(wildcards.seed),
        Path(snakemake.output[0]),
        Path(snakemake.params.work_dir),
    )
elif snakemake.rule == "synthetic_finetune":
    stages.run_finetune(
        config,
        wildcards.scale,
        wildcards.task,
        wildcards.condition,
        int(wildcards.seed),
        pretrained=Path(snakemake.input.pretrained),
        out_dir=Path(snakemake.output[0]),
        work_dir=Path(snakemake.params.work_dir),
    )
elif snakemake.rule == "download_synthetic_reference":
    reference.download_reference(snakemake.params.url, Path(snakemake.output[0]))
else:
    figures = zip(snakemake.output.figures, snakemake.output.vector_figures, strict=True)
    summary.summarize(
        config,
        wildcards.scale,
        [Path(p) for p in snakemake.input.runs],
        Path(snakemake.input.reference[0]) if snakemake.input.reference else None,
        Path(snakemake.output.json),
        Path(snakemake.output.md),
        {
            task: (Path(png), Path(svg))
            for task, (png, svg) in zip(config["synthetic"]["tasks"], figures, strict=True)
        },
    )
