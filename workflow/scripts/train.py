"""Snakemake entry point: fine-tune one (domain, model, method) (cft.training)."""

from cft.core.logging_utils import start_job
from cft.training.launch import train_resources
from cft.training.recipe import Job
from cft.training.run import launch

start_job(snakemake)
launch(
    Job(
        config=snakemake.config,
        domain=snakemake.wildcards.domain,
        model=snakemake.wildcards.model,
        method=snakemake.wildcards.method,
        tokenized_dir=snakemake.input.tokenized,
        base_model_dir=snakemake.input.base_model,
        out_dir=snakemake.output[0],
        checkpoint_dir=snakemake.params.checkpoint_dir,
        resources=train_resources(snakemake.config, snakemake.wildcards.model),
        log_file=snakemake.log[0],
        seed=int(snakemake.wildcards.seed),
    )
)
