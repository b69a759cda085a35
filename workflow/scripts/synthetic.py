"""Snakemake entry point of the synthetic experiment's rules (cft.synthetic)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
import torch

from cft import paths, synthetic
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # parallel jobs share the cores
config, wildcards = snakemake.config, snakemake.wildcards
if snakemake.rule == "synthetic_pretrain":
    synthetic.run_pretrain(
        config,
        wildcards.scale,
        int(wildcards.seed),
        Path(snakemake.output[0]),
        Path(snakemake.params.work_dir),
    )
elif snakemake.rule == "synthetic_finetune":
    synthetic.run_finetune(
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
    synthetic.download_reference(snakemake.params.url, Path(snakemake.output[0]))
else:
    reference = snakemake.input.reference
    synthetic.summarize(
        config,
        wildcards.scale,
        [Path(p) for p in snakemake.input.runs],
        Path(reference[0]) if reference else None,
        Path(snakemake.output.json),
        Path(snakemake.output.md),
        Path(paths.synthetic_figure_prefix(wildcards.scale)),
    )
